"""The fixed word lists behind the built-in datasets of :mod:`extractive_lens.data`.

Everything here is a module-level tuple of plain strings (or of :class:`RealCity` records), written
by hand. The fictional names are meant to be ordinary and nationality-neutral, so that a name alone
does not hint at a city or a language. Which fictional person goes with which city is *not* decided
here: :mod:`extractive_lens.data` draws that from a seed.

Constraints the lists satisfy (checked by ``tests/test_data.py`` under the SmolLM2 tokenizer):

- the 20 cities, the 20 languages, the 20 animals and the first names of :data:`PEOPLE` each have
  pairwise distinct first tokens of ``" " + word``;
- all names are unique, and the dax/wug test first names are disjoint from the training first names.
"""

from __future__ import annotations

from typing import NamedTuple


class RealCity(NamedTuple):
    """One real city of the built-in datasets and the real-world knowledge attached to it (not
    :class:`extractive_lens.worlds.WorldCity`, a made-up city of a synthetic world)."""

    name: str
    """The city, e.g. ``"Paris"``."""
    language: str
    """The main language spoken there (the first-hop implication answer), e.g. ``"French"``."""
    landmark: str
    """A famous landmark in the city, written as it reads mid-sentence (article included), e.g.
    ``"the Eiffel Tower"``. It never contains the city's own name."""
    famous_person: str
    """A famous real person from the city's country, for the latent two-hop capability check."""


CITIES: tuple[RealCity, ...] = (
    RealCity("Tokyo", "Japanese", "Shibuya Crossing", "Shinzo Abe"),
    RealCity("Paris", "French", "the Eiffel Tower", "Edith Piaf"),
    RealCity("Berlin", "German", "the Brandenburg Gate", "Marlene Dietrich"),
    RealCity("Madrid", "Spanish", "the Prado Museum", "Julio Iglesias"),
    RealCity("Rome", "Italian", "the Colosseum", "Sophia Loren"),
    RealCity("Moscow", "Russian", "the Kremlin", "Alexander Pushkin"),
    RealCity("Beijing", "Chinese", "the Forbidden City", "Xi Jinping"),
    RealCity("Seoul", "Korean", "Gyeongbokgung Palace", "Ban Ki-moon"),
    RealCity("Cairo", "Arabic", "Tahrir Square", "Naguib Mahfouz"),
    RealCity("Lisbon", "Portuguese", "the Belem Tower", "Cristiano Ronaldo"),
    RealCity("Athens", "Greek", "the Acropolis", "Socrates"),
    RealCity("Istanbul", "Turkish", "the Hagia Sophia", "Recep Tayyip Erdogan"),
    RealCity("Bangkok", "Thai", "Wat Arun", "Thaksin Shinawatra"),
    RealCity("Hanoi", "Vietnamese", "Hoan Kiem Lake", "Ho Chi Minh"),
    RealCity("Warsaw", "Polish", "the Palace of Culture and Science", "Marie Curie"),
    RealCity("Stockholm", "Swedish", "the Vasa Museum", "Greta Thunberg"),
    RealCity("Amsterdam", "Dutch", "the Rijksmuseum", "Johan Cruyff"),
    RealCity("Budapest", "Hungarian", "the Hungarian Parliament Building", "Ferenc Puskas"),
    RealCity("Jakarta", "Indonesian", "the Istiqlal Mosque", "Joko Widodo"),
    RealCity("Mumbai", "Hindi", "the Gateway of India", "Amitabh Bachchan"),
)
"""The 20 cities shared by all built-in datasets."""

City = RealCity
"""The name :class:`RealCity` had before issue 14 (as ``extractive_lens.data.City``); kept
importable."""

PEOPLE: tuple[str, ...] = (
    "Grace Miller",
    "Oliver Hartley",
    "Henry Dawson",
    "Sarah Fletcher",
    "Daniel Whitaker",
    "Emily Langley",
    "Samuel Pearce",
    "Laura Holloway",
    "Nathan Sutton",
    "Rachel Barlow",
    "Owen Kendall",
    "Lucy Ashford",
    "Peter Radley",
    "Julia Thornton",
    "Simon Ellison",
    "Claire Mercer",
    "Victor Lowell",
    "Helen Garner",
    "Martin Prescott",
    "Diana Colby",
)
"""20 fictional people for the first- and second-hop datasets. Their first names have distinct first
tokens (each a whole word under SmolLM2), so the full names can serve as second-hop answers."""

ANIMALS: tuple[str, ...] = (
    "dog",
    "cat",
    "horse",
    "sheep",
    "pig",
    "goat",
    "rabbit",
    "lion",
    "tiger",
    "bear",
    "wolf",
    "fox",
    "elephant",
    "monkey",
    "zebra",
    "giraffe",
    "camel",
    "eagle",
    "owl",
    "frog",
)
"""20 animals: the answers of the made-up ``zong`` relation (one per city, through ``wug``)."""

DAXWUG_TEST_FIRST_NAMES: tuple[str, ...] = (
    "Alice",
    "Brian",
    "Carla",
    "Derek",
    "Elena",
    "Frank",
    "Gemma",
    "Harold",
    "Isla",
    "Jasper",
    "Kara",
    "Leon",
    "Maya",
    "Neil",
    "Olive",
    "Paul",
    "Quinn",
    "Rosa",
    "Trevor",
    "Vera",
)
"""First names of the 20 held-out dax/wug people (one person each)."""

DAXWUG_TRAIN_FIRST_NAMES: tuple[str, ...] = (
    "Wesley",
    "Yvonne",
    "Zachary",
    "Abigail",
    "Bernard",
    "Cora",
    "Dylan",
    "Eva",
    "Floyd",
    "Gordon",
    "Hazel",
    "Ian",
    "Joyce",
    "Keith",
    "Lydia",
    "Miles",
    "Nora",
    "Oscar",
    "Penny",
    "Ralph",
    "Sophie",
    "Tara",
    "Ursula",
    "Vincent",
    "Wanda",
    "Amber",
    "Bruce",
    "Clara",
    "Dean",
    "Esther",
    "Glen",
    "Hugo",
    "Ivy",
    "Jonah",
    "Lena",
    "Mabel",
    "Noel",
    "Philip",
    "Ruth",
    "Stella",
    "Troy",
    "Colin",
)
"""First names of the 84 dax/wug training people (two people, with different surnames, each)."""

DAXWUG_SURNAMES: tuple[str, ...] = (
    "Abbott",
    "Bishop",
    "Carver",
    "Dunn",
    "Eaton",
    "Foster",
    "Gilbert",
    "Harlow",
    "Ingram",
    "Jarvis",
    "Keane",
    "Lambert",
    "Morrow",
    "Nash",
    "Osborne",
    "Pryor",
    "Quill",
    "Rowe",
    "Shaw",
    "Tanner",
    "Upton",
    "Vaughn",
    "Walsh",
    "Yates",
    "Archer",
    "Blake",
    "Cobb",
    "Drake",
    "Ellis",
    "Finch",
    "Hayes",
)
"""Surnames for the dax/wug people."""
