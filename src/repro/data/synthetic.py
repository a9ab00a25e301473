"""Synthetic stand-ins for the papers' datasets, for the smoke config (CPU, offline, minutes).

None of this follows a paper: these are small templated tasks with the same row schemas as the
real datasets (docs/architecture.md), built so that a tiny transformer (d = 64, 2 layers) learns
them in a few hundred CPU steps. Text is lowercase ASCII words separated by single spaces, with
punctuation as separate tokens, so a whitespace word-level tokenizer round-trips it exactly
(code rows excepted). Vocabularies stay under ~300 words and each side under ~14 words.

Determinism: every split draws from its own ``random.Random`` seeded with the string
``"{seed}/{generator}/{split}"`` (string seeds are hashed with SHA-512 by CPython, independent of
``PYTHONHASHSEED``), so the same seed gives byte-identical rows. Splits are generated in the order
train, validation, test, and a validation/test row whose key (source, story or program) already
appeared in an earlier split is redrawn, so evaluation inputs are never training inputs.

Generators and why copying the source is a poor baseline:

* ``paraphrase`` (QQP stand-in): intents × several question templates × slot fillers × an
  optional qualifier; the target is the same intent in a *different* template, so copying the
  source shares only the slot words and ``?``. The target template is a fixed function of the
  source template (the next one of its intent, cyclically), so each source has exactly one
  right paraphrase. Real QQP is one-to-many, but a one-to-many toy task caps what a
  one-step sampler can score: FM-seq2seq at NFE 1 returns the rounded posterior mean
  E[x₁ | source], which for a randomly chosen target template blends 2–4 templates position by
  position (rounding the exact posterior mean of each test row scored BLEU 0.17–0.31 with the
  previous random choice, against the copy baseline's 0.26), so the NFE story of FM-seq2seq
  Fig. 7 could not show on it.
* ``translation`` (WMT14 de→en stand-in): a ~100-pair German→English lexicon with German word
  order — V2 inversion after a fronted adverb, verb-final subordinate clauses, clause-final
  infinitives after modals, ``nicht`` negation — moved back to English SVO order; copying the
  source shares almost no words with the English target.
* ``instruction`` (LaMini stand-in): templated instructions with short deterministic responses
  (lists, reversal, sorting, arithmetic, antonyms, plurals, capitals, counting); responses
  reorder or compute rather than repeat the instruction.
* ``stories`` (TinyStories stand-in): 3–5 sentence stories (25–60 words) from a story arc with a
  recurring named character, pronoun, object and place.
* ``code`` (MBPP stand-in): 3–8 line Python functions from templates with varying names and
  constants, 2–3 ``assert`` tests each that the code passes, a one-line ``prompt``; for infilling,
  copying a neighbouring line fails the tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .registry import SPLITS
from .synthetic_code import WORD_POOL as _WORD_POOL
from .synthetic_code import code_row as _code

Row = dict[str, object]


def _words(text: str) -> list[str]:
    return text.split()


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# =========================================================================== paraphrase

_SKILLS = _words(
    "python java guitar piano chess english french math physics chemistry cooking drawing "
    "swimming coding spanish history biology painting singing dancing"
)
_PLACES = _words(
    "paris london tokyo india china canada japan italy egypt brazil germany spain mexico "
    "russia dubai sydney"
)
_THINGS = _words("laptop phone car house bike camera watch tablet printer sofa tv backpack")
_ROLES = _words("doctor lawyer pilot engineer teacher writer nurse chef actor scientist programmer farmer")
_GOALS = _words("memory writing health sleep focus confidence vocabulary posture")

_LEARN_MODS = ["", "at home", "online", "for free", "as a beginner", "in one year", "by myself"]
_PLACE_MODS = ["", "in summer", "in winter", "with kids", "on a budget", "for a week"]
_THING_MODS = ["", "for college", "for work", "for my family", "this year", "online"]
_ROLE_MODS = ["", "after college", "in india", "in the us", "at thirty", "without a degree"]
_GOAL_MODS = ["", "quickly", "at home", "every day", "in one month"]

# intent -> (slot values, qualifier list, templates); {x} slot, {ax} "a/an x", {m} qualifier
_INTENTS: list[tuple[tuple[str, ...], list[str], list[str]]] = [
    (
        tuple(_SKILLS),
        _LEARN_MODS,
        [
            "how do i learn {x} {m} ?",
            "what is the best way to learn {x} {m} ?",
            "how can i learn {x} quickly {m} ?",
            "what should i do to learn {x} {m} ?",
            "what is the easiest way to learn {x} {m} ?",
        ],
    ),
    (
        tuple(_SKILLS),
        _LEARN_MODS,
        [
            "how long does it take to learn {x} {m} ?",
            "how much time do i need to learn {x} {m} ?",
            "how many months does it take to learn {x} {m} ?",
        ],
    ),
    (
        tuple(_PLACES),
        _PLACE_MODS,
        [
            "what are the best places to visit in {x} {m} ?",
            "which places should i visit in {x} {m} ?",
            "what should i see when i visit {x} {m} ?",
            "what are good places to see in {x} {m} ?",
        ],
    ),
    (
        tuple(_PLACES),
        [""],
        [
            "what is it like to live in {x} ?",
            "how is life in {x} ?",
            "is {x} a good place to live ?",
            "how good is life in {x} ?",
        ],
    ),
    (
        tuple(_THINGS),
        _THING_MODS,
        [
            "which {x} should i buy {m} ?",
            "what is the best {x} to buy {m} ?",
            "can you suggest a good {x} to buy {m} ?",
            "what {x} should i get {m} ?",
        ],
    ),
    (
        tuple(_THINGS),
        [""],
        [
            "where can i buy a cheap {x} ?",
            "what is the best place to buy a cheap {x} ?",
            "where do i find a {x} at a low price ?",
        ],
    ),
    (
        tuple(_ROLES),
        _ROLE_MODS,
        [
            "how do i become {ax} {m} ?",
            "what should i do to become {ax} {m} ?",
            "what are the steps to become {ax} {m} ?",
            "how can someone become a good {x} {m} ?",
        ],
    ),
    (
        tuple(_ROLES),
        _ROLE_MODS,
        [
            "how much money does {ax} make {m} ?",
            "what is the salary of {ax} {m} ?",
            "how much does {ax} earn {m} ?",
        ],
    ),
    (
        tuple(_GOALS),
        _GOAL_MODS,
        [
            "how can i improve my {x} {m} ?",
            "what are some ways to improve my {x} {m} ?",
            "how do i make my {x} better {m} ?",
        ],
    ),
]
_DIFF_TEMPLATES = [
    "what is the difference between {x} and {y} ?",
    "how is {x} different from {y} ?",
    "how are {x} and {y} different ?",
    "should i learn {x} or {y} first ?",
]


def _fill(template: str, x: str, m: str, y: str = "") -> str:
    text = template.format(x=x, ax=f"{_a(x)} {x}", m=m, y=y)
    return " ".join(text.split())


def _paraphrase(rng: random.Random) -> Row:
    while True:
        if rng.random() < 0.1:  # comparisons: two slots from the same list
            x, y = rng.sample(_SKILLS, 2)
            i = rng.randrange(len(_DIFF_TEMPLATES))
            j = (i + 1) % len(_DIFF_TEMPLATES)  # one right paraphrase per source (docstring)
            src, trg = _fill(_DIFF_TEMPLATES[i], x, "", y), _fill(_DIFF_TEMPLATES[j], x, "", y)
        else:
            values, mods, templates = _INTENTS[rng.randrange(len(_INTENTS))]
            x, m = rng.choice(values), rng.choice(mods)
            i = rng.randrange(len(templates))
            j = (i + 1) % len(templates)
            src, trg = _fill(templates[i], x, m), _fill(templates[j], x, m)
        if all(5 <= len(s.split()) <= 14 for s in (src, trg)):
            return {"src": src, "trg": trg}


# =========================================================================== translation

# German nouns (ASCII, no umlauts): (german, gender, english)
_ANIMATE = [
    ("hund", "m", "dog"), ("mann", "m", "man"), ("vater", "m", "father"),
    ("lehrer", "m", "teacher"), ("junge", "m", "boy"), ("vogel", "m", "bird"),
    ("koch", "m", "cook"), ("freund", "m", "friend"), ("bruder", "m", "brother"),
    ("katze", "f", "cat"), ("frau", "f", "woman"), ("mutter", "f", "mother"),
    ("schwester", "f", "sister"), ("tante", "f", "aunt"), ("maus", "f", "mouse"),
    ("kuh", "f", "cow"), ("ente", "f", "duck"),
    ("kind", "n", "child"), ("pferd", "n", "horse"), ("schaf", "n", "sheep"),
]
_OBJECTS = [
    ("apfel", "m", "apple"), ("ball", "m", "ball"), ("tisch", "m", "table"),
    ("brief", "m", "letter"), ("kuchen", "m", "cake"), ("hut", "m", "hat"),
    ("stuhl", "m", "chair"), ("blume", "f", "flower"), ("tasche", "f", "bag"),
    ("lampe", "f", "lamp"), ("zeitung", "f", "newspaper"), ("suppe", "f", "soup"),
    ("auto", "n", "car"), ("buch", "n", "book"), ("haus", "n", "house"), ("brot", "n", "bread"),
    ("bild", "n", "picture"), ("lied", "n", "song"), ("spiel", "n", "game"),
    ("fenster", "n", "window"), ("geschenk", "n", "gift"),
]
_ADJECTIVES = [
    ("klein", "small"), ("gross", "big"), ("alt", "old"), ("jung", "young"), ("rot", "red"),
    ("blau", "blue"), ("schnell", "fast"), ("lustig", "funny"), ("neu", "new"),
    ("gut", "good"), ("warm", "warm"), ("klug", "clever"), ("nett", "nice"),
]
# (german 3sg, german infinitive, english 3sg, english infinitive)
_TRANSITIVE = [
    ("sieht", "sehen", "sees", "see"), ("kauft", "kaufen", "buys", "buy"),
    ("findet", "finden", "finds", "find"), ("liebt", "lieben", "loves", "love"),
    ("hat", "haben", "has", "have"), ("braucht", "brauchen", "needs", "need"),
    ("malt", "malen", "paints", "paint"), ("holt", "holen", "gets", "get"),
    ("baut", "bauen", "builds", "build"), ("sucht", "suchen", "looks for", "look for"),
    ("bringt", "bringen", "brings", "bring"), ("zeigt", "zeigen", "shows", "show"),
]
_INTRANSITIVE = [
    ("singt", "singen", "sings", "sing"), ("lacht", "lachen", "laughs", "laugh"),
    ("spielt", "spielen", "plays", "play"), ("wartet", "warten", "waits", "wait"),
    ("tanzt", "tanzen", "dances", "dance"), ("schwimmt", "schwimmen", "swims", "swim"),
    ("kommt", "kommen", "comes", "come"), ("arbeitet", "arbeiten", "works", "work"),
]
_TIME_ADVERBS = [("heute", "today"), ("morgen", "tomorrow"), ("jetzt", "now"), ("abends", "tonight")]
_FREQ_ADVERBS = [("oft", "often"), ("manchmal", "sometimes"), ("immer", "always"), ("selten", "rarely")]
_MODALS = [("will", "wants to"), ("kann", "can"), ("muss", "must"), ("soll", "should")]
_INTROS = [
    ("ich glaube", "i think"), ("ich weiss", "i know"), ("er sagt", "he says"),
    ("sie hofft", "she hopes"), ("wir wissen", "we know"),
]

_DEF = {("nom", "m"): "der", ("nom", "f"): "die", ("nom", "n"): "das",
        ("acc", "m"): "den", ("acc", "f"): "die", ("acc", "n"): "das"}
_INDEF = {("nom", "m"): "ein", ("nom", "f"): "eine", ("nom", "n"): "ein",
          ("acc", "m"): "einen", ("acc", "f"): "eine", ("acc", "n"): "ein"}
# adjective endings after the definite (weak) and indefinite (mixed) article
_WEAK = {("nom", "m"): "e", ("nom", "f"): "e", ("nom", "n"): "e",
         ("acc", "m"): "en", ("acc", "f"): "e", ("acc", "n"): "e"}
_MIXED = {("nom", "m"): "er", ("nom", "f"): "e", ("nom", "n"): "es",
          ("acc", "m"): "en", ("acc", "f"): "e", ("acc", "n"): "es"}


def _np(rng: random.Random, nouns: list[tuple[str, str, str]], case: str) -> tuple[str, str]:
    """A German noun phrase in ``case`` and its English translation."""
    de_noun, gender, en_noun = rng.choice(nouns)
    definite = rng.random() < 0.6
    key = (case, gender)
    adj = rng.choice(_ADJECTIVES) if rng.random() < 0.35 else None
    de = [_DEF[key] if definite else _INDEF[key]]
    en_words = ([adj[1]] if adj else []) + [en_noun]
    en = ["the" if definite else _a(en_words[0])]
    if adj:
        de.append(adj[0] + (_WEAK if definite else _MIXED)[key])
    de.append(de_noun)
    return " ".join(de), " ".join(en + en_words)


def _translation(rng: random.Random) -> Row:
    while True:
        s_de, s_en = _np(rng, _ANIMATE, "nom")
        o_de, o_en = _np(rng, _OBJECTS + _ANIMATE, "acc")
        v3, vinf, e3, einf = rng.choice(_TRANSITIVE)
        form = rng.randrange(8)
        if form == 0:  # plain SVO (same order in both languages)
            de, en = f"{s_de} {v3} {o_de} .", f"{s_en} {e3} {o_en} ."
        elif form == 1:  # intransitive
            iv3, _, ie3, _ = rng.choice(_INTRANSITIVE)
            de, en = f"{s_de} {iv3} .", f"{s_en} {ie3} ."
        elif form == 2:  # fronted time adverb: V2 inversion; English puts it last
            adv_de, adv_en = rng.choice(_TIME_ADVERBS)
            de, en = f"{adv_de} {v3} {s_de} {o_de} .", f"{s_en} {e3} {o_en} {adv_en} ."
        elif form == 3:  # fronted frequency adverb: V2 inversion; English: before the verb
            adv_de, adv_en = rng.choice(_FREQ_ADVERBS)
            de, en = f"{adv_de} {v3} {s_de} {o_de} .", f"{s_en} {adv_en} {e3} {o_en} ."
        elif form == 4:  # modal: the infinitive goes to the end of the German clause
            m_de, m_en = rng.choice(_MODALS)
            de, en = f"{s_de} {m_de} {o_de} {vinf} .", f"{s_en} {m_en} {einf} {o_en} ."
        elif form == 5:  # negation: "nicht" clause-final; English do-support
            de, en = f"{s_de} {v3} {o_de} nicht .", f"{s_en} does not {einf} {o_en} ."
        elif form == 6:  # subordinate clause: verb-final after "dass"
            i_de, i_en = rng.choice(_INTROS)
            de, en = f"{i_de} , dass {s_de} {o_de} {v3} .", f"{i_en} that {s_en} {e3} {o_en} ."
        else:  # causal clause: verb-final after "weil"
            s2_de, s2_en = _np(rng, _ANIMATE, "nom")
            iv3, _, ie3, _ = rng.choice(_INTRANSITIVE)
            de = f"{s_de} {v3} {o_de} , weil {s2_de} {iv3} ."
            en = f"{s_en} {e3} {o_en} because {s2_en} {ie3} ."
        if all(4 <= len(s.split()) <= 12 for s in (de, en)):
            return {"src": de, "trg": en}


# =========================================================================== instruction

_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_CATEGORIES = {
    "colors": ["red", "blue", "green", "yellow", "black"],
    "animals": ["cat", "dog", "horse", "cow", "bird"],
    "fruits": ["apple", "banana", "orange", "grape", "pear"],
    "days": ["monday", "tuesday", "wednesday", "thursday", "friday"],
    "seasons": ["spring", "summer", "autumn", "winter"],
    "shapes": ["circle", "square", "triangle", "star", "heart"],
    "drinks": ["water", "milk", "tea", "coffee", "juice"],
    "planets": ["mercury", "venus", "earth", "mars", "jupiter"],
}
_ANTONYMS = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("up", "down"),
    ("old", "new"), ("light", "dark"), ("open", "closed"), ("early", "late"), ("full", "empty"),
    ("hard", "soft"), ("high", "low"), ("rich", "poor"), ("strong", "weak"), ("wet", "dry"),
]
_PLURALS = [
    ("cat", "cats"), ("dog", "dogs"), ("box", "boxes"), ("bus", "buses"), ("child", "children"),
    ("mouse", "mice"), ("foot", "feet"), ("tooth", "teeth"), ("man", "men"), ("woman", "women"),
    ("leaf", "leaves"), ("knife", "knives"), ("baby", "babies"), ("city", "cities"),
    ("fish", "fish"), ("sheep", "sheep"), ("church", "churches"), ("glass", "glasses"),
    ("tomato", "tomatoes"), ("wolf", "wolves"), ("goose", "geese"), ("story", "stories"),
]
_CAPITALS = [
    ("france", "paris"), ("germany", "berlin"), ("italy", "rome"), ("spain", "madrid"),
    ("japan", "tokyo"), ("china", "beijing"), ("egypt", "cairo"), ("russia", "moscow"),
    ("canada", "ottawa"), ("peru", "lima"), ("kenya", "nairobi"), ("greece", "athens"),
    ("norway", "oslo"), ("poland", "warsaw"), ("ireland", "dublin"),
]


def _instruction(rng: random.Random) -> Row:
    kind = rng.randrange(10)
    if kind == 0:
        cat = rng.choice(sorted(_CATEGORIES))
        n = rng.randint(2, min(4, len(_CATEGORIES[cat])))
        verb = rng.choice(["list", "name", "give me"])
        src = f"{verb} {_NUMBER_WORDS[n]} {cat} ."
        trg = " , ".join(_CATEGORIES[cat][:n]) + " ."
    elif kind == 1:
        words = rng.sample(_WORD_POOL, rng.randint(2, 5))
        src = "reverse the words : " + " ".join(words)
        trg = " ".join(reversed(words))
    elif kind == 2:
        nums = [str(rng.randrange(10)) for _ in range(rng.randint(3, 6))]
        src = "sort the numbers : " + " ".join(nums)
        trg = " ".join(sorted(nums))
    elif kind == 3:
        pair = rng.choice(_ANTONYMS)
        a, b = pair if rng.random() < 0.5 else pair[::-1]
        src = rng.choice([f"what is the opposite of {a} ?", f"give the opposite of {a} ."])
        trg = f"the opposite of {a} is {b} ."
    elif kind == 4:
        a, b = rng.randrange(10), rng.randrange(10)
        src = rng.choice([f"what is {a} plus {b} ?", f"add {a} and {b} ."])
        trg = f"{a} plus {b} is {a + b} ."
    elif kind == 5:
        w, n = rng.choice(_WORD_POOL), rng.randint(2, 4)
        src = f"repeat the word {w} {_NUMBER_WORDS[n]} times ."
        trg = " ".join([w] * n)
    elif kind == 6:
        words = rng.sample(_WORD_POOL, rng.randint(2, 7))
        src = "count the words : " + " ".join(words)
        trg = f"there are {_NUMBER_WORDS[len(words)]} words ."
    elif kind == 7:
        one, many = rng.choice(_PLURALS)
        src = f"what is the plural of {one} ?"
        trg = f"the plural of {one} is {many} ."
    elif kind == 8:
        country, city = rng.choice(_CAPITALS)
        src = rng.choice([f"what is the capital of {country} ?", f"name the capital of {country} ."])
        trg = f"the capital of {country} is {city} ."
    else:
        w = rng.choice(_WORD_POOL)
        src = f"what is the first letter of {w} ?"
        trg = f"the first letter of {w} is {w[0]} ."
    return {"src": src, "trg": trg}


# =========================================================================== stories

_GIRLS = _words("lily mia anna lucy emma zoe")
_BOYS = _words("tom ben sam max jack leo")
_ANIMALS = _words("dog cat bird bunny bear frog")
_STORY_ADJ = _words("little happy small kind brave shy funny curious")
_TOYS = _words("ball kite hat book doll drum box balloon car boat")
_TOY_ADJ = _words("red blue big new shiny green")
_STORY_PLACES = _words("park garden forest beach school farm yard river")
_FEELINGS = _words("sad scared upset")


def _story(rng: random.Random) -> Row:
    while True:
        name, friend = rng.sample(_GIRLS + _BOYS, 2)
        pro, pos = ("she", "her") if name in _GIRLS else ("he", "his")
        kind = rng.choice(["girl" if name in _GIRLS else "boy", *_ANIMALS])
        fkind = rng.choice(["girl" if friend in _GIRLS else "boy", *_ANIMALS])
        adj, toy, tadj = rng.choice(_STORY_ADJ), rng.choice(_TOYS), rng.choice(_TOY_ADJ)
        place, feel = rng.choice(_STORY_PLACES), rng.choice(_FEELINGS)
        intro = rng.choice([
            f"once upon a time , there was a {adj} {kind} named {name} .",
            f"{name} was a {adj} {kind} who lived near the {place} .",
            f"there once was a {adj} {kind} called {name} .",
        ])
        like = rng.choice([
            f"{name} loved to play with {pos} {tadj} {toy} in the {place} .",
            f"every day , {name} took {pos} {tadj} {toy} to the {place} .",
            f"{pro} had a {tadj} {toy} and {pro} liked it very much .",
        ])
        problem = rng.choice([
            f"one day , {name} lost {pos} {toy} in the {place} .",
            f"one day , a strong wind took the {toy} away .",
            f"one day , the {toy} fell into a deep hole .",
        ])
        helper = rng.random() < 0.4  # a friend comes to help; only then do endings name them
        if helper:
            middle = f"then {friend} the {fkind} came to help {name} ."
            ending = rng.choice([
                f"{friend} found the {toy} and gave it back to {name} . {name} was happy again .",
                f"together they found the {toy} under a big tree . {name} said thank you .",
            ])
        else:
            middle = rng.choice([
                f"{name} was very {feel} and began to cry .",
                f"{pro} looked everywhere , but {pro} could not find it .",
            ])
            ending = rng.choice([
                f"at last {name} found the {toy} . from that day on , {pro} kept it safe .",
                f"then {name} found the {toy} under a big tree and smiled .",
            ])
        parts = [intro]
        if rng.random() < 0.6:
            parts.append(like)
        parts.append(problem)
        if helper or rng.random() < 0.5:
            parts.append(middle)
        parts.append(ending)
        text = " ".join(parts)
        if 25 <= len(text.split()) <= 60:
            return {"text": text}


# =========================================================================== registry

#: generator name -> (task kind, one-row sampler)
GENERATORS: dict[str, tuple[str, Callable[[random.Random], Row]]] = {
    "paraphrase": ("seq2seq", _paraphrase),
    "translation": ("seq2seq", _translation),
    "instruction": ("seq2seq", _instruction),
    "stories": ("text", _story),
    "code": ("code", _code),
}

_KEY = {"seq2seq": "src", "text": "text", "code": "code"}


def generate(generator: str, seed: int, size: dict[str, int]) -> dict[str, list[Row]]:
    """Rows (without ``id``) of every split in ``size`` for ``generator``, deterministic in ``seed``.

    A validation/test row whose source (``src``, ``text`` or ``code``) already appeared in an
    earlier split is redrawn; raises ``ValueError`` if a split cannot be filled with unseen rows.
    """
    if generator not in GENERATORS:
        raise ValueError(f"unknown synthetic generator {generator!r}; use one of {sorted(GENERATORS)}")
    kind, sample = GENERATORS[generator]
    key = _KEY[kind]
    seen: set[object] = set()
    out: dict[str, list[Row]] = {}
    for split in [s for s in SPLITS if s in size] + sorted(set(size) - set(SPLITS)):
        rng = random.Random(f"{seed}/{generator}/{split}")
        rows: list[Row] = []
        held_out = split != "train"
        rejected = 0  # consecutive redraws; many in a row means the row space is exhausted
        while len(rows) < size[split]:
            row = sample(rng)
            if held_out and row[key] in seen:
                rejected += 1
                if rejected > 10_000:
                    raise ValueError(
                        f"synthetic generator {generator!r} could not draw {size[split]} {split} "
                        f"rows unseen in earlier splits (got {len(rows)}); lower "
                        f"synthetic.size.{split}"
                    )
                continue
            rejected = 0
            if held_out:
                seen.add(row[key])
            rows.append(row)
        if not held_out:
            seen.update(r[key] for r in rows)
        out[split] = rows
    return out
