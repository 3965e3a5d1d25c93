"""Many runs that answer one question: studies (sweeps, pretraining) and the reports' recipes."""
