"""A tiny deterministic data source for training tests: copy the first half."""

import torch


class CopySource:
    """Sequences ``a b c ... a b c``; the second half (the copy) is the answer."""

    vocab_size = 32

    def batch(self, step, batch_size, length, split="train"):
        seed = (0 if split == "train" else 10_000_019) + step
        gen = torch.Generator().manual_seed(seed)
        half = torch.randint(2, self.vocab_size, (batch_size, length // 2 + 1), generator=gen)
        ids = torch.cat([half, half], 1)[:, :length]  # (B, T)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[:, length // 2 + 1 :] = True
        return ids, mask
