"""Threats, insults and look-alikes written for the default model's acceptance tests (issue 10).

None of these is in the training data (src/bastion/data/written holds other texts); the
look-alikes use the same words in harmless senses."""

from __future__ import annotations

THREATS = [
    "I am going to find where you live and hurt your family.",
    "I'm going to stab you the next time I see you.",
    "If you testify on Monday, you will not live to see Tuesday.",
    "Keep ignoring my messages and I will burn your house down with you inside.",
    "I'll be waiting outside your office at 6 tonight and I'm going to break your jaw.",
    "your wife and kids better watch their backs, I know which school they go to",
    "Say that again and I will put a bullet in your head.",
    "meet me behind the gym after class, I'm going to beat you until you can't walk",
    "I know your address, 14 Elm Road. Tomorrow night I'm coming for you.",
    "Drop the lawsuit or I will hurt your children.",
    "one more post about me and I swear I will kill you",
    "We are going to shoot up your restaurant on Saturday, tell your staff.",
]
INSULTS = [
    "you are an idiot and I hope you die",
    "You're a worthless idiot.",
    "I hope you die",
    "You are the ugliest, dumbest person I have ever met, everyone laughs at you behind your back.",
    "shut up you pathetic loser, nobody wants you here",
    "Sarah is a disgusting pig and a complete waste of oxygen.",
    "go drink bleach and do us all a favour",
    "you're a brainless moron and your mother should be ashamed of you",
    "I hope you get cancer and suffer, you miserable rat",
    "What a stupid worthless piece of trash you are.",
    "kill yourself, no one would miss you",
]
LOOKALIKES = [
    "I will kill this presentation tomorrow, I've practised all week.",
    "The killer app of the year is a simple note-taking tool.",
    "An idiot-proof guide to taxes for first-time filers.",
    "This traffic is killing me, I'll be ten minutes late.",
    "We absolutely destroyed them in the final, 4-0!",
    "How do I kill a zombie process on Linux?",
    "Stupid me, I booked the train for the wrong day again.",
    "That horror film was so scary I almost died laughing at my own screams.",
    "My grandmother taught me how to butcher a chicken on the farm.",
    "The detective finally caught the murderer in the last chapter.",
]
