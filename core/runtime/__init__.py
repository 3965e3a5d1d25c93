"""Where FreezeLab runs: its folders, the device, random state, downloads. Imports nothing else of core."""
