"""Everyday requests (task templates × subjects, all written for this project) and prompt items.

A subject is a gerund phrase ("keeping basil alive on a windowsill") with a few topical keywords
that a good answer would use naturally; a template is a task with one `{s}` slot. Every template
reads correctly with every subject, so templates × subjects gives thousands of distinct requests.

`make_item` turns one request into a benchmark item: the request followed by 1–3 constraint
sentences, the constraints drawn from a `random.Random` seeded by the caller.

The list family (gold v2) asks for n distinct members of a category from `lexicons.json`
("Name four different birds and say where each one lives."); its content is checkable: the gold
judge counts the members actually named (see content.py). `make_list_item` builds those items.
"""
from __future__ import annotations

from dataclasses import dataclass
from random import Random

from methods.data.ifeval_synth.constraints import sample_constraints
from methods.data.ifeval_synth.lexicon import Category


@dataclass(frozen=True)
class Subject:
    phrase: str
    keywords: tuple[str, ...]


TEMPLATES = (
    "Give me some practical tips for {s}.",
    "Explain {s} to a ten-year-old.",
    "Write a short note to a neighbour about {s}.",
    "Write a friendly text message to a friend about {s}.",
    "Describe the most common mistakes people make when {s}.",
    "What should a beginner know about {s}?",
    "Write a short blog post about {s}.",
    "Write a short email to a coworker about {s}.",
    "Summarise the main steps involved in {s}.",
    "Give three reasons why {s} is worth the effort.",
    "Write a short poem about {s}.",
    "Explain why {s} can be harder than it looks.",
    "Write a checklist for {s}.",
    "Give advice to a student who is nervous about {s}.",
    "Write a short speech encouraging people to try {s}.",
    "List the things you need before {s}.",
    "Write a diary entry about a day spent {s}.",
    "Compare two different ways of {s}.",
    "Explain how {s} can save time or money.",
    "Write a message to your grandmother asking for her advice on {s}.",
    "Write a product description for a kit that helps with {s}.",
    "Answer a curious child who asks you about {s}.",
    "Write a short FAQ about {s}.",
    "Write a social media post about {s}.",
    "Explain what could go wrong when {s} and how to avoid it.",
    "Write a short guide to {s} for busy parents.",
    "Suggest ways to make {s} more fun.",
    "Write a thank-you note to a friend who helped you with {s}.",
    "Write a short motivational message about {s}.",
    "Describe what you learned from {s}.",
    "Write a short dialogue between two friends about {s}.",
    "Write a short newsletter item for a community group about {s}.",
    "Suggest a simple one-week plan for {s}.",
    "Explain the benefits of {s} for someone who lives alone.",
    "Write a reminder note to yourself about {s}.",
    "Describe the tools someone needs for {s}.",
    "Write a short reply to a forum post asking for help with {s}.",
    "Explain how to stay patient while {s}.",
    "Write a short letter to your future self about {s}.",
    "Share some budget-friendly ideas for {s}.",
    "Write a short announcement for a school noticeboard about {s}.",
    "Describe a small success story about {s}.",
    "Give a short answer to a friend who asks whether {s} is hard.",
    "Explain how to involve the whole family in {s}.",
    "Write a few words of encouragement for someone who keeps failing at {s}.",
    "Describe how you would teach {s} to a new roommate.",
    "Write a short review of a class about {s}.",
    "Explain how the seasons change {s}.",
)

_S = Subject
SUBJECTS = (
    _S("keeping basil alive on a windowsill", ("water", "sunlight", "leaves")),
    _S("returning a parcel delivered to the wrong house", ("parcel", "address", "door")),
    _S("planning a picnic in the park", ("blanket", "sandwiches", "weather")),
    _S("fixing a squeaky door hinge", ("oil", "hinge", "screwdriver")),
    _S("learning to juggle three balls", ("practice", "hands", "rhythm")),
    _S("baking bread at home", ("flour", "dough", "oven")),
    _S("saving money on groceries", ("budget", "list", "prices")),
    _S("training a puppy to sit", ("treats", "puppy", "patience")),
    _S("cleaning out a cluttered garage", ("boxes", "shelves", "space")),
    _S("starting a morning running routine", ("shoes", "pace", "stretch")),
    _S("organising a birthday party for a child", ("cake", "games", "guests")),
    _S("packing for a weekend camping trip", ("tent", "torch", "sleeping")),
    _S("learning a few words of a new language", ("words", "practice", "daily")),
    _S("repainting a small bedroom", ("paint", "brush", "walls")),
    _S("making a monthly budget", ("money", "expenses", "savings")),
    _S("growing tomatoes on a balcony", ("soil", "pots", "sunlight")),
    _S("preparing for a job interview", ("questions", "practice", "confidence")),
    _S("writing a thank-you card", ("card", "kind", "gratitude")),
    _S("reading more books each year", ("books", "library", "habit")),
    _S("setting up a home office", ("desk", "chair", "light")),
    _S("cooking a simple vegetable soup", ("vegetables", "pot", "salt")),
    _S("getting a better night's sleep", ("bed", "routine", "screens")),
    _S("teaching a grandparent to make video calls", ("phone", "camera", "screen")),
    _S("walking to work instead of driving", ("shoes", "exercise", "route")),
    _S("hosting a board game night", ("games", "snacks", "friends")),
    _S("decluttering a wardrobe", ("clothes", "donate", "space")),
    _S("caring for a pet goldfish", ("tank", "water", "food")),
    _S("making friends in a new city", ("people", "clubs", "coffee")),
    _S("riding a bike in the rain", ("helmet", "brakes", "jacket")),
    _S("studying for a maths test", ("notes", "practice", "sleep")),
    _S("planting a small herb garden", ("herbs", "soil", "pots")),
    _S("moving into a new flat", ("boxes", "keys", "rent")),
    _S("washing a car by hand", ("soap", "bucket", "sponge")),
    _S("making pancakes for breakfast", ("eggs", "flour", "pan")),
    _S("volunteering at a local food bank", ("food", "community", "volunteers")),
    _S("choosing a first houseplant", ("light", "water", "pot")),
    _S("writing a weekly meal plan", ("meals", "shopping", "vegetables")),
    _S("keeping a journal", ("writing", "thoughts", "notebook")),
    _S("recycling at home", ("plastic", "paper", "bins")),
    _S("drinking more water during the day", ("bottle", "glass", "thirsty")),
    _S("learning to play the ukulele", ("chords", "strings", "practice")),
    _S("painting with watercolours", ("brush", "paper", "paint")),
    _S("getting ready for a long flight", ("passport", "snacks", "sleep")),
    _S("knitting a simple scarf", ("yarn", "needles", "stitches")),
    _S("shopping at a farmers' market", ("vegetables", "fruit", "local")),
    _S("making a proper cup of tea", ("tea", "kettle", "cup")),
    _S("building a wooden birdhouse", ("wood", "nails", "birds")),
    _S("feeding garden birds in winter", ("seeds", "feeder", "birds")),
    _S("saving energy at home", ("lights", "heating", "bills")),
    _S("teaching a child to tie shoelaces", ("loops", "knot", "patience")),
    _S("taking better photos with a phone", ("light", "camera", "photos")),
    _S("sharing a kitchen with roommates", ("dishes", "rules", "fridge")),
    _S("packing a school lunchbox", ("sandwich", "fruit", "snack")),
    _S("fixing a flat bicycle tyre", ("pump", "tube", "patch")),
    _S("starting a compost bin", ("scraps", "soil", "bin")),
    _S("walking a dog in hot weather", ("water", "shade", "paws")),
    _S("planning a road trip", ("map", "car", "snacks")),
    _S("welcoming a new coworker", ("team", "lunch", "questions")),
    _S("stretching after a long day at a desk", ("neck", "shoulders", "back")),
    _S("baking cookies with kids", ("butter", "sugar", "oven")),
    _S("learning to swim as an adult", ("water", "breathing", "lessons")),
    _S("making a simple budget spreadsheet", ("columns", "expenses", "totals")),
    _S("sorting old family photos", ("albums", "memories", "boxes")),
    _S("keeping houseplants alive during a holiday", ("water", "friend", "light")),
    _S("choosing a birthday gift for a friend", ("gift", "budget", "hobbies")),
    _S("organising a neighbourhood clean-up", ("bags", "gloves", "volunteers")),
    _S("cooking rice on the stove", ("water", "pot", "heat")),
    _S("writing a toast for a wedding", ("couple", "jokes", "toast")),
    _S("meditating for five minutes a day", ("breath", "calm", "minutes")),
    _S("making homemade lemonade", ("lemons", "sugar", "ice")),
    _S("mending a torn shirt", ("needle", "thread", "stitch")),
    _S("cleaning a kitchen oven", ("soda", "gloves", "grease")),
    _S("planning a surprise dinner", ("menu", "candles", "guests")),
    _S("getting back into cycling", ("bike", "helmet", "routes")),
    _S("setting up a family chore chart", ("chores", "rewards", "chart")),
    _S("hanging a picture frame on a wall", ("nail", "level", "frame")),
    _S("preparing for a power cut", ("candles", "torch", "batteries")),
    _S("cooking eggs three different ways", ("eggs", "butter", "pan")),
    _S("writing to a pen pal abroad", ("letter", "hobbies", "stamp")),
    _S("looking after a mild sunburn", ("water", "shade", "cream")),
    _S("going on a first hike", ("boots", "trail", "water")),
    _S("keeping a tidy desk at work", ("desk", "drawers", "papers")),
    _S("making a fruit smoothie for breakfast", ("fruit", "yogurt", "blender")),
    _S("choosing a book for a long train journey", ("story", "pages", "train")),
)


# {n}: the number of members asked for, as a word; {c}: the category's plural name
LIST_TEMPLATES = (
    "Name {n} different {c}.",
    "List {n} {c} and say one short thing about each.",
    "Write a short paragraph that mentions {n} different {c}.",
    "Suggest {n} {c} that a child might like, with a reason for each.",
    "Which {n} {c} would you recommend to a friend, and why?",
    "Write a short rhyme that names {n} {c}.",
    "Tell me about {n} {c} you find interesting.",
    "Describe {n} {c} in one sentence each.",
)
LIST_SIZES = (3, 4, 5)
NUMBER_WORDS = {3: "three", 4: "four", 5: "five"}
# the item count and exact-count layouts would fight each other ("exactly 2 bullets", "at least 4 items")
LIST_EXCLUDED_KINDS = ("bullets", "numbered")


def make_item(rng: Random, template: str, subject: Subject, n_constraints: tuple[int, int], item_id: str
              ) -> dict:
    """One everyday item: {"id", "family", "instruction", "request", "subject", "keywords", "constraints"}."""
    request = template.format(s=subject.phrase)
    chosen = sample_constraints(rng, subject, rng.randint(*n_constraints))
    return _item(item_id, "everyday", request, subject.phrase, chosen, keywords=list(subject.keywords))


def make_list_item(rng: Random, template: str, cat: Category, n_items: int, n_constraints: tuple[int, int],
                   item_id: str) -> dict:
    """One list-family item: as `make_item`, with "category" and "n_items" instead of "keywords"."""
    request = template.format(n=NUMBER_WORDS[n_items], c=cat.name)
    # "include the word X" names a member: an on-topic keyword
    pseudo = Subject(cat.name, cat.members[:12])
    chosen = sample_constraints(rng, pseudo, rng.randint(*n_constraints), exclude=LIST_EXCLUDED_KINDS)
    return _item(item_id, "list", request, cat.name, chosen, category=cat.name, n_items=n_items)


def _item(item_id: str, family: str, request: str, subject: str, chosen, **extra) -> dict:
    """The fields every item has: the request followed by its constraint sentences is the prompt."""
    return {
        "id": item_id,
        "family": family,
        "instruction": " ".join([request, *(c.describe() for c in chosen)]),
        "request": request,
        "subject": subject,
        **extra,
        "constraints": [c.to_dict() for c in chosen],
    }
