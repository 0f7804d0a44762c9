"""Short social-post texts for the service load benchmark: distinct by construction, some violating.

`short_post(i)` is a pure function of `i`: a post body (benign or clearly violating, written for
this benchmark, not taken from any dataset) with an opener, a mention and a tail chosen by the
digits of `i` in a mixed radix. The body changes fastest, so consecutive indices alternate
topics; the first 50 x 16 x 16 x 16 = 204,800 indices give distinct texts, and beyond that a
counter is appended. A result cache in the server therefore never sees the same text twice
unless the load generator repeats one on purpose (`HOT_SET`, the `--repeat-share` option).
"""

from __future__ import annotations

BENIGN = (
    "finally fixed the leaky tap in the kitchen, only took three youtube videos",
    "who else is watching the cup final tonight? bringing snacks",
    "the new bakery on elm street does a cardamom bun that is unreal",
    "my toddler just called the moon a night banana and i have nothing to add",
    "anyone know a good mechanic near the station? clutch is making noises",
    "rain all week but the garden looks happy about it",
    "three hours into this jigsaw and the sky is all the same blue",
    "book club is moving to the second thursday from next month",
    "first 10k done, slow but i did not stop once",
    "the bus driver waited for me today, small kindness, big difference",
    "selling a barely used road bike, medium frame, message me",
    "our choir concert is on sunday at four, entry is free",
    "tried making ramen from scratch and the broth took all day",
    "the dog stole a whole baguette and looks zero percent sorry",
    "reminder that the pool is closed for cleaning until wednesday",
    "this podcast about deep sea fish is weirdly relaxing",
    "got the flat! moving in on the first, need help carrying a sofa",
    "the sunset over the harbour tonight was ridiculous",
    "can recommend the free coding workshop at the library",
    "power cut on our street again, candles and board games it is",
    "exam results tomorrow and i cannot sleep",
    "lost a blue scarf near the park gates, sentimental value",
    "grandma turned ninety today and beat us all at cards",
    "the new season of that baking show is so wholesome",
    "traffic on the ring road is backed up past the bridge",
    "made a spreadsheet for my plants and i regret nothing",
    "volunteers needed for the beach clean up on saturday morning",
    "coffee machine at work is broken and morale is low",
    "just learned octopuses have three hearts, what",
    "thank you to whoever handed in my wallet at the front desk",
)
VIOLATING = (
    "i know which house is yours and i am coming tonight to hurt you",
    "you should just end it, the world would be better without you",
    "people like them are subhuman filth and should be driven out",
    "pay me or everyone sees the pictures you sent me",
    "you are a disgusting worthless loser and everyone laughs at you",
    "i am going to bring my dad's gun to school and make them pay",
    "selling untraceable pistols, no id needed, cash only, dm me",
    "i have been cutting again and this time i want to go deeper",
    "round them all up and burn their shops to the ground",
    "keep talking and i will break every bone in your face",
    "how to get pills without a prescription to overdose quietly",
    "those people breed like rats and are ruining this country",
    "send nudes or i tell your parents what you did",
    "stab him next time he walks past, he deserves it",
    "nobody would miss you, do everyone a favour and disappear",
    "cheap cocaine delivered tonight, message for the menu",
    "i will find you after work and you will not walk again",
    "women like her deserve to be beaten until they learn",
    "here is the address of that reporter, go and teach her a lesson",
    "i am done, tonight i take all the pills in the cabinet",
)
BODIES = BENIGN + VIOLATING
OPENERS = (
    "",
    "ugh ",
    "lol ",
    "honestly ",
    "PSA: ",
    "not gonna lie, ",
    "update: ",
    "ok so ",
    "reminder: ",
    "btw ",
    "wow ",
    "hey all, ",
    "quick one: ",
    "real talk: ",
    "just saying, ",
    "fyi ",
)
MENTIONS = (
    "",
    " @jordan",
    " @mika_k",
    " cc @sam",
    " @the_real_lee",
    " @ana",
    " @devon99",
    " @river",
    " @kai.b",
    " @noor",
    " @ellis",
    " @priya_s",
    " @tomasz",
    " @wren",
    " @chloe.x",
    " @bo",
)
TAILS = (
    "",
    " #mondaymood",
    " 🙃",
    " !!",
    " (again)",
    " #fyp",
    " - thoughts?",
    " smh",
    " 😂",
    " #localnews",
    " ...",
    " ok bye",
    " 💀",
    " #weekend",
    " lmao",
    " tbh",
)
DISTINCT = len(BODIES) * len(OPENERS) * len(MENTIONS) * len(TAILS)
HOT_SET_SIZE = 50


def short_post(i: int) -> str:
    """The i-th post (i >= 0): distinct for every i, about 35 to 110 characters."""
    rest, body = divmod(i, len(BODIES))
    rest, opener = divmod(rest, len(OPENERS))
    rest, mention = divmod(rest, len(MENTIONS))
    rest, tail = divmod(rest, len(TAILS))
    text = OPENERS[opener] + BODIES[body] + MENTIONS[mention] + TAILS[tail]
    return f"{text} #{rest}" if rest else text


def is_violating(i: int) -> bool:
    """Whether the i-th post's body is one of the violating ones (what the author meant)."""
    return i % len(BODIES) >= len(BENIGN)


HOT_SET = tuple(short_post(i) for i in range(HOT_SET_SIZE))
"""The texts a repeated request draws from: a few popular posts, shared or spammed again."""
