"""Calibration texts for the static int8 exports (ONNX Runtime and OpenVINO).

Static quantization fixes every activation scale at export time, from the ranges the fp32
graph shows on calibration input; it is what makes an int8 vector a function of its own text
only (dynamic quantization picks scales per batch tensor, so batch-mates and padding leak into
each row). The ranges must cover what the service embeds: feed headlines of a few tokens,
descriptions of a few dozen and article bodies cut at the token limit.

What comes out: :func:`calibration_texts`, a fixed, deterministic list of a few hundred texts
built from :data:`SENTENCES` (news-like sentences written for this purpose, varied in topic,
punctuation, numbers and language): each sentence alone, each headline-sized prefix, pairs, and
long passages of many sentences. Shipped with the code, so building an export needs no data set
and gives the same model on every machine.
"""

from __future__ import annotations

import random

#: News-like sentences (no real article is quoted); a few in other languages the feeds carry.
SENTENCES: tuple[str, ...] = (
    "Central bank holds interest rates steady as inflation cools for a third month.",
    "Floods displace thousands in the river delta after days of monsoon rain.",
    "The striker scored twice in the second half to send his club into the final.",
    "Parliament passed the budget bill late on Tuesday after a marathon debate over "
    "defence spending, pensions and a contested tax on imported fuel.",
    "Researchers say a new battery chemistry could halve the cost of grid storage.",
    "Shares in the chipmaker fell 8% after it warned that demand from data centres is slowing.",
    "Election officials began counting ballots on Sunday night; turnout was about 61 percent.",
    "A ceasefire brokered by regional mediators appeared to hold along the border.",
    "The film festival opened with a documentary about migrant workers in the Gulf.",
    "Health ministry confirms 12 new cases of measles, urges parents to vaccinate children.",
    "Tech giant unveils AI assistant for spreadsheets; critics raise privacy concerns.",
    "Oil prices rose above $90 a barrel after producers agreed to extend output cuts.",
    "Police arrested two men suspected of smuggling antiquities across the desert.",
    "The opposition leader called for early elections, saying the coalition had lost its "
    "mandate after the resignation of three ministers over a procurement scandal.",
    "Drought has cut the wheat harvest by a quarter, pushing bread prices to a record.",
    "Scientists detect water vapour in the atmosphere of a distant exoplanet.",
    "The union said talks with the airline broke down and strikes will go ahead on Friday.",
    "Wildfires forced the evacuation of several villages as winds gusted over 80 km/h.",
    "Court rules the surveillance programme unlawful and orders data to be deleted.",
    "Startup raises $40m to build cheaper satellite internet for rural schools.",
    "Tennis champion withdraws from the tournament with a wrist injury.",
    "The government announced a plan to build 500,000 homes over the next decade, with a "
    "third reserved for social housing and new rules for developers.",
    "Stock markets in Asia opened lower after weak factory data from China.",
    "Earthquake of magnitude 6.2 strikes off the coast; no tsunami warning issued.",
    "Museum returns looted bronze sculptures to their country of origin.",
    "Ministers meet in Brussels to discuss sanctions, energy security and migration.",
    "Hospital waiting lists reach their longest since records began, figures show.",
    "A cyber attack disrupted payments at hundreds of supermarkets over the weekend.",
    "The president pardoned dozens of protesters detained during last year's unrest.",
    "Rare snowfall blankets the capital, closing schools and grounding flights.",
    "Car maker recalls 200,000 vehicles over a faulty brake sensor.",
    "Peace talks resume in Geneva with both delegations present for the first time.",
    "Q3 revenue: $4.7bn (up 12% y/y); operating margin 18.3%, guidance unchanged.",
    "'We will not back down,' the mayor told reporters outside city hall on Monday.",
    "UPDATE 2-Airline cancels 1,200 flights as pilots walk out over pay",
    "Watch: rescue crews pull a driver from a flooded underpass in Houston",
    "Opinion | Why the housing crisis will outlast this government",
    "Analysis: what the new tariffs mean for farmers, factories and shoppers",
    "The World Health Organization (WHO) declared the outbreak over on 14 March 2025.",
    "Reuters could not independently verify the footage, which was posted on social media.",
    "A spokesperson for the company declined to comment on the report.",
    "The bill, which passed 312-118, now goes to the Senate, where its fate is uncertain.",
    "Temperatures will reach 38C in Seville and 41C in Córdoba on Thursday, forecasters say.",
    "Coach: 'The lads gave everything; we were simply beaten by a better side tonight.'",
    "Bitcoin slid below $60,000 as traders priced in fewer rate cuts this year.",
    "Archaeologists uncovered a 2,000-year-old Roman villa beneath a car park in Kent.",
    "The ferry, carrying 340 passengers, ran aground near the island's northern harbour.",
    "Nurses in three states voted to accept a 9% pay rise, ending months of walkouts.",
    "An inquiry found that warnings about the dam's cracks were ignored for a decade.",
    "Lawmakers grilled the social media executives over teenagers' mental health.",
    "The World Bank cut its global growth forecast to 2.4%, citing trade tensions.",
    "Astronauts returned to Earth after 186 days aboard the International Space Station.",
    "A gunman opened fire at a shopping centre, killing four people before he was shot.",
    "Locusts have destroyed crops across 70,000 hectares in the Horn of Africa.",
    "The novelist, 84, died peacefully at her home in Dublin, her publisher said.",
    "Vaccination rates among toddlers have fallen for the fifth year in a row.",
    "Workers at the car plant will move to a four-day week to avoid lay-offs.",
    "Investigators recovered the black box recorders from the crash site on Saturday.",
    "The regulator approved the $69bn takeover on condition that the games stay available.",
    "Islamabad: the Supreme Court adjourned the hearing until next week.",
    "Nairobi traders say fuel shortages have doubled the cost of moving goods inland.",
    "Buenos Aires: inflation slowed to 2.7% a month, its lowest in three years.",
    "Mumbai's monsoon rains flooded railway tracks and halted suburban trains.",
    "Seoul and Tokyo agreed to share real-time missile warning data.",
    "Kyiv says air defences shot down 29 of 34 drones launched overnight.",
    "El Gobierno aprobó este martes la reforma de las pensiones tras meses de negociación.",
    "Las lluvias torrenciales dejaron al menos 12 muertos en el sur del país.",
    "El Banco Central mantuvo los tipos de interés sin cambios por tercera reunión seguida.",
    "Le Premier ministre a annoncé un plan de soutien aux agriculteurs.",
    "Die Regierung will die Schuldenbremse im kommenden Jahr wieder einhalten.",
    "Breaking: explosion reported at chemical plant; residents told to stay indoors",
    "Live updates: polls close in key swing states as counting begins",
    "Exclusive: bank weighs sale of its wealth unit, sources say",
    "5 things to know before the stock market opens today",
    "How a small town in Ohio became the centre of the battery boom",
    "Review: a sprawling, brilliant novel about love, debt and the sea",
    "Recipe: slow-roasted tomatoes with garlic, thyme and olive oil",
    "Transfer news: midfielder completes £45m move after passing medical",
    "Gold hit a record $2,450 an ounce; silver rose 3.1% to $31.20.",
    "Emergency services were called to the M25 at 06:40 after a lorry overturned.",
    "COVID-19 admissions rose 17% week on week, UKHSA data showed.",
    "The EU's CBAM levy on imported steel and cement takes effect in January.",
    "NASA's Artemis II crew will fly around the Moon no earlier than next April.",
    "#BREAKING Magnitude 7.1 quake hits Taiwan; buildings collapse in Hualien",
    "Read more: https://example.org/world/2025/03/ceasefire-talks",
    "Subscribe to our newsletter for the day's top stories.",
    "Photo: supporters wave flags at a rally in the capital (AP Photo/Jane Doe)",
    "The company, founded in 1998, employs about 14,000 people in 40 countries.",
    "Residents described hearing 'a huge bang, like thunder' shortly before midnight.",
    "A jury found the former executive guilty on seven counts of fraud.",
    "Scientists warn that the glacier could lose half its ice by 2100.",
    "The app was downloaded more than 10 million times in its first week.",
    "Teachers say pupils are still catching up on lessons lost during the pandemic.",
    "The ruling party won 54 of 90 seats, short of the two-thirds it needed.",
    "Protesters blocked the highway with burning tyres, demanding clean water.",
    "Retail sales fell 0.6% in May, worse than the 0.2% drop economists expected.",
    "The minister denied any wrongdoing and said she would not resign.",
    "Aid convoys reached the besieged city for the first time in six weeks.",
)


def calibration_texts() -> list[str]:
    """A deterministic list of a few hundred texts of mixed length (see the module docstring).

    Headline prefixes (2-8 words), single sentences, pairs and long passages (12-20
    sentences, past the model's token limit so the tokenizer cuts them as it cuts articles).
    """
    rng = random.Random(20_251_129)
    sentences = list(SENTENCES)
    texts: list[str] = []
    for sentence in sentences:
        words = sentence.split()
        texts.append(" ".join(words[: rng.randint(2, 8)]))
        texts.append(sentence)
    for _ in range(len(sentences)):
        texts.append(" ".join(rng.sample(sentences, 2)))
    for _ in range(len(sentences) // 2):
        texts.append(" ".join(rng.sample(sentences, rng.randint(12, 20))))
    return texts
