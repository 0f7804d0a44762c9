"""Texts written for Bastion's triage tests: an emerging crypto-doubling scam (the bank's
known examples), look-alikes that are fine, paraphrases to recall, and everyday posts."""

# An emerging scam no category of the policy was written for: the bank's few known examples.
SCAM = [
    "Send 0.1 BTC to this wallet and get 1 BTC back, Elon's official giveaway ends tonight",
    "Double your ethereum now: transfer to the address in my bio and receive twice as much",
    "Official crypto giveaway! Send any amount of bitcoin and we return it doubled within an hour",
    "Limited promo: deposit USDT to this wallet, get 2x back instantly, verified by the foundation",
    "Celebrity bitcoin giveaway live now, send coins to the address below to receive double",
]
LOOKALIKES = [  # fine: talk about crypto that is not the scam
    "Bitcoin fell 4 percent today after the rate decision",
    "How do I move my ethereum from an exchange to a hardware wallet safely?",
]
PARAPHRASES = [
    "giveaway!! send btc to the wallet below and you get double back, ends at midnight",
    "transfer your eth to my address and receive 2x, official promotion from the team",
    "we return double any bitcoin you send to this address, celebrity giveaway today only",
]
BENIGN = [
    "Our bakery opens at 7 tomorrow, fresh croissants all morning",
    "The match went to penalties and the keeper saved two",
    "Does anyone know a good tutorial for knitting socks?",
    "Traffic on the ring road is terrible again this evening",
    "I finally finished the novel, the ending was worth it",
    "New bike lanes on Main Street make the commute so much nicer",
    "Rain all weekend, perfect excuse to stay in and read",
    "Happy birthday to my little sister, love you!",
]
