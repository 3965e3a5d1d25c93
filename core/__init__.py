"""FreezeLab's engine: data, backbones, freeze plans and training. Never imports streamlit."""
