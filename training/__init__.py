"""LoRA fine-tuning of the emotion classifier under Ray Train."""
