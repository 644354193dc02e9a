"""The fixed texts that ``embedding_backend=auto`` measures speed and quality on, at first start.

Kept apart from :mod:`embedding.calibration` on purpose: the OpenVINO export fixes its
activation scales on those texts, and a quality figure taken on them would flatter it.

What comes out: :func:`probe_texts`, 48 deterministic texts shaped like what the worker embeds:
headlines of a few words, feed descriptions of one or two sentences, and article bodies of
12-16 sentences (past the token limit, so they are cut as articles are).
"""

from __future__ import annotations

import random

#: News-like sentences written for this purpose (no real article is quoted).
SENTENCES: tuple[str, ...] = (
    "The port authority reopened the harbour after divers cleared a sunken barge.",
    "Regional elections handed the governing party its worst result in two decades.",
    "A heat dome over the plains pushed power demand to a record on Wednesday.",
    "The airline ordered 60 narrow-body jets, with options for 40 more by 2031.",
    "Investigators blamed a faulty valve for the gas leak that forced an evacuation.",
    "Grain exports resumed from the southern ports under a new shipping corridor.",
    "The goalkeeper saved two penalties as the visitors won the shoot-out 4-2.",
    "Lawmakers approved a ban on disposable vapes, to take effect next summer.",
    "Customs officers seized 1.2 tonnes of cocaine hidden in a banana shipment.",
    "The telescope captured the sharpest image yet of a star-forming nebula.",
    "Unemployment rose to 5.4% as manufacturers cut jobs for a fourth month.",
    "Rail workers will strike for 48 hours after pay talks collapsed overnight.",
    "A landslide blocked the mountain highway, stranding hundreds of lorries.",
    "The city council voted to turn the old gasworks into a public park.",
    "Doctors reported a sharp rise in heatstroke cases among outdoor workers.",
    "The central bank's governor hinted that rate cuts could come in the spring.",
    "Firefighters contained the blaze at the recycling plant after nine hours.",
    "Coffee futures jumped 6% after frost damaged plantations in the highlands.",
    "El tribunal suspendió la ley de vivienda a la espera de una decisión final.",
    "La ministre a promis de nouveaux fonds pour les hôpitaux ruraux.",
    "Die Bahn kündigte höhere Preise für Fernverkehrstickets ab Dezember an.",
    "Quarterly profit: $812m (down 4% y/y); the dividend stays at 38 cents.",
    "'It felt like the whole building was swaying,' one resident said.",
    "Exclusive: regulator probes banks over hidden overdraft fees, documents show",
)
#: How many texts of each shape :func:`probe_texts` returns.
HEADLINES, DESCRIPTIONS, PAIRS, ARTICLES = 12, 18, 12, 6


def probe_texts() -> list[str]:
    """48 texts: 12 headlines (3-7 words), 18 single sentences, 12 pairs, 6 long articles."""
    rng = random.Random(20_261_129)
    sentences = list(SENTENCES)
    texts = [" ".join(s.split()[: rng.randint(3, 7)]) for s in sentences[:HEADLINES]]
    texts += sentences[:DESCRIPTIONS]
    texts += [" ".join(rng.sample(sentences, 2)) for _ in range(PAIRS)]
    texts += [" ".join(rng.sample(sentences, rng.randint(12, 16))) for _ in range(ARTICLES)]
    return texts
