"""The ``code`` generator of :mod:`repro.data.synthetic` (MBPP stand-in).

Each template draws a function name, argument and accumulator names and constants, and returns
``(name, code, draw_args, reference, prompt)``: 3–8 lines of Python, an argument sampler and the
reference function its ``assert`` tests are computed with. Every draw comes from the split's
``random.Random``, in the order written here, so rows are byte-identical for a seed.
"""

from __future__ import annotations

import random

#: the small noun pool of the ``instruction`` generator, also the words of string arguments here
WORD_POOL = ["sun", "moon", "tree", "rock", "fish", "boat", "road", "door", "lamp", "cup", "ship", "rain", "snow", "wind", "fire", "hill", "lake", "book", "pen", "key", "box", "hat", "egg", "leaf", "bell", "rope", "coin"]


_LIST_ARGS = ["xs", "nums", "values", "items", "arr", "data"]
_NUM_ARGS = ["n", "x", "num", "k", "m"]
_STR_ARGS = ["s", "text", "word", "string"]
_ACCS = ["total", "acc", "result", "res", "out"]


def _ilist(rng: random.Random, lo: int = 0, hi: int = 9, n: tuple[int, int] = (2, 5)) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(rng.randint(*n))]


def _word(rng: random.Random) -> str:
    return rng.choice(WORD_POOL + ["hello", "python", "banana", "queue", "rhythm", "idea"])


def _code_sum(rng: random.Random):
    fn = rng.choice(["sum_list", "list_sum", "add_all", "total_of"])
    xs, acc, x = rng.choice(_LIST_ARGS), rng.choice(_ACCS), rng.choice(["x", "v", "item"])
    code = f"def {fn}({xs}):\n    {acc} = 0\n    for {x} in {xs}:\n        {acc} += {x}\n    return {acc}"
    return fn, code, lambda r: (_ilist(r),), lambda a: sum(a), "write a function to sum the numbers in a list ."


def _code_max2(rng: random.Random):
    fn = rng.choice(["max_of_two", "larger", "bigger", "max2"])
    a, b = rng.choice([("a", "b"), ("x", "y"), ("m", "n"), ("p", "q")])
    code = f"def {fn}({a}, {b}):\n    if {a} > {b}:\n        return {a}\n    return {b}"
    return fn, code, lambda r: (r.randint(-9, 20), r.randint(-9, 20)), max, "write a function to find the larger of two numbers ."


def _code_vowels(rng: random.Random):
    fn = rng.choice(["count_vowels", "vowel_count", "num_vowels"])
    s, n, c = rng.choice(_STR_ARGS), rng.choice(["n", "count", "total"]), rng.choice(["c", "ch"])
    code = (f"def {fn}({s}):\n    {n} = 0\n    for {c} in {s}:\n        if {c} in \"aeiou\":\n"
            f"            {n} += 1\n    return {n}")
    return fn, code, lambda r: (_word(r),), lambda w: sum(ch in "aeiou" for ch in w), "write a function to count the vowels in a string ."


def _code_reverse(rng: random.Random):
    fn = rng.choice(["reverse_string", "reverse", "rev", "backwards"])
    s, out, c = rng.choice(_STR_ARGS), rng.choice(["out", "result", "res"]), rng.choice(["c", "ch"])
    code = f"def {fn}({s}):\n    {out} = \"\"\n    for {c} in {s}:\n        {out} = {c} + {out}\n    return {out}"
    return fn, code, lambda r: (_word(r),), lambda w: w[::-1], "write a function to reverse a string ."


def _code_factorial(rng: random.Random):
    fn = rng.choice(["factorial", "fact", "prod_upto"])
    n, acc, i = rng.choice(_NUM_ARGS), rng.choice(_ACCS), rng.choice(["i", "j"])
    code = (f"def {fn}({n}):\n    {acc} = 1\n    for {i} in range(2, {n} + 1):\n"
            f"        {acc} *= {i}\n    return {acc}")

    def ref(v: int) -> int:
        out = 1
        for i_ in range(2, v + 1):
            out *= i_
        return out

    return fn, code, lambda r: (r.randint(0, 7),), ref, "write a function to compute the factorial of a number ."


def _code_scale(rng: random.Random):
    k = rng.randint(2, 9)
    fn = rng.choice([f"times_{k}", "scale", "multiply_all"])
    xs, out, x = rng.choice(_LIST_ARGS), rng.choice(["out", "result", "res"]), rng.choice(["x", "v"])
    code = (f"def {fn}({xs}):\n    {out} = []\n    for {x} in {xs}:\n"
            f"        {out}.append({x} * {k})\n    return {out}")
    return fn, code, lambda r: (_ilist(r),), lambda a: [v * k for v in a], f"write a function to multiply every number in a list by {k} ."


def _code_divisible(rng: random.Random):
    k = rng.randint(2, 9)
    fn = rng.choice([f"divisible_by_{k}", "is_multiple", "check_div"])
    n = rng.choice(_NUM_ARGS)
    code = f"def {fn}({n}):\n    if {n} % {k} == 0:\n        return True\n    return False"
    return fn, code, lambda r: (r.randint(0, 60),), lambda v: v % k == 0, f"write a function to check if a number is divisible by {k} ."


def _code_count(rng: random.Random):
    k = rng.randint(0, 5)
    fn = rng.choice([f"count_{k}s", "count_value", "occurrences"])
    xs, n, x = rng.choice(_LIST_ARGS), rng.choice(["n", "count", "c"]), rng.choice(["x", "v"])
    code = (f"def {fn}({xs}):\n    {n} = 0\n    for {x} in {xs}:\n        if {x} == {k}:\n"
            f"            {n} += 1\n    return {n}")
    return fn, code, lambda r: (_ilist(r, 0, 5, (3, 7)),), lambda a: a.count(k), f"write a function to count how many times {k} appears in a list ."


def _code_add_const(rng: random.Random):
    k = rng.randint(1, 20)
    fn = rng.choice([f"add_{k}", "increase", "shift"])
    x, y = rng.choice(_NUM_ARGS), rng.choice(["y", "out", "result"])
    code = f"def {fn}({x}):\n    {y} = {x} + {k}\n    return {y}"
    return fn, code, lambda r: (r.randint(-20, 50),), lambda v: v + k, f"write a function to add {k} to a number ."


def _code_min(rng: random.Random):
    fn = rng.choice(["min_of_list", "smallest", "find_min"])
    xs, best, x = rng.choice(_LIST_ARGS), rng.choice(["best", "low", "m"]), rng.choice(["x", "v"])
    code = (f"def {fn}({xs}):\n    {best} = {xs}[0]\n    for {x} in {xs}:\n        if {x} < {best}:\n"
            f"            {best} = {x}\n    return {best}")
    return fn, code, lambda r: (_ilist(r, -9, 20),), min, "write a function to find the smallest number in a list ."


def _code_sum_squares(rng: random.Random):
    fn = rng.choice(["sum_of_squares", "square_sum", "squares_upto"])
    n, acc, i = rng.choice(_NUM_ARGS), rng.choice(_ACCS), rng.choice(["i", "j"])
    code = (f"def {fn}({n}):\n    {acc} = 0\n    for {i} in range(1, {n} + 1):\n"
            f"        {acc} += {i} * {i}\n    return {acc}")
    return fn, code, lambda r: (r.randint(0, 9),), lambda v: sum(i * i for i in range(1, v + 1)), "write a function to sum the squares from 1 to n ."


def _code_evens(rng: random.Random):
    fn = rng.choice(["count_evens", "num_even", "even_count"])
    xs, n, x = rng.choice(_LIST_ARGS), rng.choice(["n", "count", "c"]), rng.choice(["x", "v"])
    code = (f"def {fn}({xs}):\n    {n} = 0\n    for {x} in {xs}:\n        if {x} % 2 == 0:\n"
            f"            {n} += 1\n    return {n}")
    return fn, code, lambda r: (_ilist(r, 0, 20, (2, 6)),), lambda a: sum(v % 2 == 0 for v in a), "write a function to count the even numbers in a list ."


def _code_fib(rng: random.Random):
    fn = rng.choice(["fib", "fibonacci", "nth_fib"])
    n, a, b = rng.choice(_NUM_ARGS), *rng.choice([("a", "b"), ("x", "y"), ("p", "q")])
    if n in (a, b):
        n = "n" if "n" not in (a, b) else "k"
    code = (f"def {fn}({n}):\n    {a}, {b} = 0, 1\n    for _ in range({n}):\n"
            f"        {a}, {b} = {b}, {a} + {b}\n    return {a}")

    def ref(v: int) -> int:
        p, q = 0, 1
        for _ in range(v):
            p, q = q, p + q
        return p

    return fn, code, lambda r: (r.randint(0, 12),), ref, "write a function to return the fibonacci number at position n ."


def _code_power(rng: random.Random):
    k = rng.randint(2, 4)
    fn = rng.choice([f"power_{k}", "raise_to", "pow_k"])
    x, acc = rng.choice(_NUM_ARGS), rng.choice(_ACCS)
    code = f"def {fn}({x}):\n    {acc} = 1\n    for _ in range({k}):\n        {acc} *= {x}\n    return {acc}"
    return fn, code, lambda r: (r.randint(-5, 9),), lambda v: v**k, f"write a function to raise a number to the power {k} ."


_CODE_TEMPLATES = [
    _code_sum, _code_max2, _code_vowels, _code_reverse, _code_factorial, _code_scale,
    _code_divisible, _code_count, _code_add_const, _code_min, _code_sum_squares, _code_evens,
    _code_fib, _code_power,
]


def code_row(rng: random.Random) -> dict[str, object]:
    """One ``code`` row: a program from a random template, its prompt and 2–3 ``assert`` tests
    (distinct arguments, at most 50 draws)."""
    fn, code, draw_args, ref, prompt = rng.choice(_CODE_TEMPLATES)(rng)
    tests, seen = [], set()
    n_tests = rng.randint(2, 3)
    for _ in range(50):
        args = draw_args(rng)
        text = ", ".join(repr(a) for a in args)
        if text in seen:
            continue
        seen.add(text)
        tests.append(f"assert {fn}({text}) == {ref(*args)!r}")
        if len(tests) == n_tests:
            break
    return {"prompt": prompt, "code": code, "tests": tests, "setup": ""}
