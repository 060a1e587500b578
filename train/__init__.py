"""Learning from traces: LoRA fine-tuning (SFT, DPO) on our engine, and datasets from agent runs."""
