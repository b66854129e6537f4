"""The training recipes: one typed entry function per kind of run (pretrain, finetune, scratch) with its argument
dataclass, the argument groups they share, and the local workspace of corpora and tokenizers they train on."""
