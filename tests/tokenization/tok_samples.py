"""Sample texts for the tokenization tests (a uniquely named module, importable by tests)."""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "the cat sat on mat a dog ran far what is how do i learn python why sky blue "
    "quick brown fox jumps over lazy once upon time there was little girl she liked play"
)

CODE = [
    "def add(a, b):\n    return a + b\n",
    "def is_even(n):\n    if n % 2 == 0:\n        return True\n    return False\n",
    "import math\n\n\ndef area(r):\n    \"\"\"Circle area.\"\"\"\n    return math.pi * r ** 2\n",
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "def rev(s):\n\treturn s[::-1]  # tab-indented, héllo\n",
    "class Box:\n    def __init__(self, x):\n        self.x = x\n\n    def get(self):\n"
    "        return self.x\n",
]


def shared_data_dir() -> Path:
    """/work/shared/data beside the repository (small real dataset samples; may be absent)."""
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

PAD, UNK, CLS, SEP, MASK, BOS, EOS = range(7)


def s2s(src: str, trg: str, i: int = 0) -> dict:
    return {"id": f"d/test/{i}", "src": src, "trg": trg}


def code_row(code: str, i: int = 0, prompt: str = "") -> dict:
    return {"id": f"c/test/{i}", "prompt": prompt, "code": code, "tests": [], "setup": ""}


def long_program(n_lines: int = 14) -> str:
    body = "".join(f"    x{i} = n + {i}\n" for i in range(1, n_lines + 1))
    return "def f(n):\n" + body + "    return n\n"
