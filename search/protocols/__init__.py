"""Evaluation protocols over many searches and trainings: stand-alone ranking, device pairs,
train-once-specialize, the cross-device table, the accuracy model and random sampling at a
price."""
