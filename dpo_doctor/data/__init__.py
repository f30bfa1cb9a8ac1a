"""Pairs and prompts: file formats, TRL-identical tokenization, the tokenized pair type."""
