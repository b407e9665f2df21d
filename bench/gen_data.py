#!/usr/bin/env python3
"""Writes the fixed benchmark dataset for bench/archive.sh into DIR.

Seeded, so every run writes byte-identical data:
- 20,000 text-like files of 1-32 KiB in nested folders (compressible),
- 200 files of 1-4 MiB alternating 256 KiB of random bytes and 256 KiB of repetitive text,
- one 200 MiB text-like file and one 200 MiB random file.
"""
import os
import random
import sys

MIB = 1 << 20


def main(root: str) -> None:
    rng = random.Random(20240611)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(3000)]

    def text(n: int) -> bytes:
        out = []
        size = 0
        while size < n:
            line = " ".join(rng.choices(words, k=rng.randint(4, 16))) + "\n"
            out.append(line)
            size += len(line)
        return "".join(out).encode()[:n]

    def write(path: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    for i in range(20000):
        d = os.path.join(root, "small", f"d{i % 40:02d}", f"e{(i // 40) % 25:02d}")
        write(os.path.join(d, f"file{i:05d}.txt"), text(rng.randint(1024, 32 * 1024)))

    for i in range(200):
        size = rng.randint(1 * MIB, 4 * MIB)
        parts = []
        left = size
        random_turn = i % 2 == 0
        while left > 0:
            n = min(256 * 1024, left)
            if random_turn:
                parts.append(rng.randbytes(n))
            else:
                unit = f"record {i} value {rng.randint(0, 99)};".encode()
                parts.append((unit * (n // len(unit) + 1))[:n])
            random_turn = not random_turn
            left -= n
        write(os.path.join(root, "medium", f"blob{i:03d}.bin"), b"".join(parts))

    big = os.path.join(root, "big")
    os.makedirs(big, exist_ok=True)
    with open(os.path.join(big, "text.log"), "wb") as f:
        for _ in range(200):
            f.write(text(MIB))
    with open(os.path.join(big, "random.bin"), "wb") as f:
        for _ in range(200):
            f.write(rng.randbytes(MIB))


if __name__ == "__main__":
    main(sys.argv[1])
