"""WordNet 3.0 for nltk's METEOR, offline.

nltk looks for WordNet in its data folders and `nltk.download` cannot reach its server here.
Debian's `wordnet-base` and `wordnet-sense-index` packages ship the same WordNet 3.0 database
files, so `ensure_wordnet` makes nltk find WordNet in this order:

1. nltk's own data (`corpora/wordnet` or `corpora/wordnet.zip` in any `nltk.data.path` folder);
2. a corpus folder built once from the Debian files: `<cache>/nltk_data/corpora/wordnet`, where
   the cache is `$CXRCAP_CACHE` or `~/.cache/cxrcap` (`cxrcap.cache`). The files are copied,
   not symlinked (nltk resolves paths inside its corpus root), and a `lexnames` file is written:
   WordNet 3.0's fixed list of 45 lexicographer files, which nltk reads but Debian does not ship
   (it documents the list in lexnames(5WN));
3. otherwise `WordNetMissingError`, naming the Debian packages to install.

METEOR needs nothing else from nltk's data: it only calls `wordnet.synsets`, and the
multilingual Open Multilingual Wordnet (omw-1.4) is loaded by nltk only for other languages.
"""

import shutil
from pathlib import Path

import nltk
from nltk.corpus import CorpusReader, LazyCorpusLoader
from nltk.corpus.reader.wordnet import WordNetCorpusReader

from .cache import building, cache_root

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
DEBIAN_PACKAGES = ("wordnet-base", "wordnet-sense-index")
INSTALL_HINT = "apt-get install " + " ".join(DEBIAN_PACKAGES)

# The database files nltk's WordNetCorpusReader opens, by the Debian package that ships them.
_FILES_BY_PACKAGE = {
    "wordnet-base": tuple(f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv"))
    + tuple(f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv"))
    + ("cntlist.rev",),
    "wordnet-sense-index": ("index.sense",),
}

# WordNet 3.0 lexicographer files (lexnames(5WN)): number, name, syntactic category
# (1 noun, 2 verb, 3 adjective, 4 adverb). The line number is the file number.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


class WordNetMissingError(RuntimeError):
    """WordNet is neither in nltk's data nor installable from the Debian packages."""


def ensure_wordnet(debian_dir: Path = DEBIAN_WORDNET_DIR) -> None:
    """Make `nltk.corpus.wordnet` loadable offline, building the corpus folder if needed."""
    if _nltk_has_wordnet():
        return
    data_dir = cache_root() / "nltk_data"
    corpus = data_dir / "corpora" / "wordnet"
    if not (corpus / "lexnames").is_file():
        build_corpus(debian_dir, corpus)
    if str(data_dir) not in nltk.data.path:
        nltk.data.path.append(str(data_dir))


def build_corpus(debian_dir: Path, corpus: Path) -> None:
    """Copy the Debian WordNet files into an nltk corpus folder `corpus`, plus `lexnames`.

    The folder is assembled beside its destination and renamed into place, so another
    process never sees it half-built.
    """
    missing = {
        package: [name for name in names if not (debian_dir / name).is_file()]
        for package, names in _FILES_BY_PACKAGE.items()
    }
    missing = {package: names for package, names in missing.items() if names}
    if missing:
        detail = "; ".join(f"{package} lacks {', '.join(names)}" for package, names in missing.items())
        raise WordNetMissingError(
            "METEOR needs WordNet 3.0, which nltk cannot download here and which was not found in "
            f"nltk's data folders nor complete in {debian_dir} ({detail}). "
            f"Install it with: {INSTALL_HINT}"
        )
    with building(corpus) as staging:
        for names in _FILES_BY_PACKAGE.values():
            for name in names:
                shutil.copyfile(debian_dir / name, staging / name)
        (staging / "lexnames").write_text(
            "".join(
                f"{number:02d}\t{name}\t{_SYNTACTIC_CATEGORY[name.split('.')[0]]}\n"
                for number, name in enumerate(_LEXNAMES)
            )
        )


def load_wordnet():
    """nltk's WordNet reader, loaded (a few seconds: call it once, off the hot path)."""
    ensure_wordnet()
    # The multilingual data as nltk.corpus.wordnet gets it: loaded only if another language is asked for.
    omw = LazyCorpusLoader("omw-1.4", CorpusReader, r".*/wn-data-.*\.tab", encoding="utf8")
    return _WordNet30Reader(_corpus_root(), omw)


class _WordNet30Reader(WordNetCorpusReader):
    """nltk's reader without its per-load WordNet 3.0 map (8 of ~13 s of loading, holding the
    interpreter). nltk 3.10 builds the map, used only to place Open Multilingual Wordnet
    entries, whenever `get_version()` ("3.0") differs from its argument, the corpus *name*
    "wordnet": always. For WordNet 3.0 the map is the identity, which `None` means."""

    def map_wn(self, version="wordnet"):
        return None if self.get_version() == "3.0" else super().map_wn(version)


def _corpus_root():
    for resource in ("corpora/wordnet", "corpora/wordnet.zip/wordnet/"):
        try:
            return nltk.data.find(resource)
        except LookupError:
            pass
    return None


def _nltk_has_wordnet() -> bool:
    return _corpus_root() is not None
