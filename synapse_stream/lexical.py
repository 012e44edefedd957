"""A lexical view of the posts: hashed word and character n-grams (no vocabulary to keep).

Offensive and hateful language, spam and scams are carried by words, spellings and obfuscations
("id10t", "f*ck", "fr3e m0ney") as much as by topic, which a sentence embedding blurs. :class:`LexicalFeatures`
turns texts into sparse hashed counts with scikit-learn's ``HashingVectorizer`` (stateless: the same text always
gives the same row, on any worker, with no fitted vocabulary):

* words and word bigrams (lower-cased, ``token_pattern`` of one or more word characters);
* character 3- to 5-grams inside word boundaries (``char_wb``), which catch spellings and obfuscations;

each block L2-normalised and scaled by ``weight``, so the block sits beside a unit embedding without drowning it.

>>> lex = LexicalFeatures(n_features=2 ** 12)
>>> M = lex.transform(["You are an id10t", "you are an ID10T!", "what a lovely film"])
>>> M.shape
(3, 8192)
>>> import numpy as np
>>> sims = (M @ M.T).toarray()
>>> bool(sims[0, 1] > 0.9 * sims[0, 0] > 50 * sims[0, 2])   # the same insult in another case: nearly the same row
True
>>> hstack_features(np.ones((3, 4), np.float32), M).shape
(3, 8196)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from .exceptions import ConfigError


class LexicalFeatures:
    """Hashed word (1–2) and character (3–5, within words) n-grams; ``2 · n_features`` sparse columns."""

    def __init__(self, n_features: int = 2 ** 18, weight: float = 0.5) -> None:
        if n_features < 16:
            raise ConfigError(f"lexical n_features must be >= 16, got {n_features}")
        if weight <= 0:
            raise ConfigError(f"lexical weight must be > 0, got {weight}")
        from sklearn.feature_extraction.text import HashingVectorizer

        self.n_features = int(n_features)
        self.weight = float(weight)
        self.words = HashingVectorizer(n_features=self.n_features, ngram_range=(1, 2), alternate_sign=False,
                                       norm="l2", lowercase=True)
        self.chars = HashingVectorizer(n_features=self.n_features, analyzer="char_wb", ngram_range=(3, 5),
                                       alternate_sign=False, norm="l2", lowercase=True)

    @property
    def dim(self) -> int:
        return 2 * self.n_features

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Sparse ``[len(texts), 2 · n_features]`` float32 rows. Time O(total characters)."""
        texts = list(texts)
        if not texts:
            return sparse.csr_matrix((0, self.dim), dtype=np.float32)
        M = sparse.hstack([self.words.transform(texts), self.chars.transform(texts)], format="csr")
        return (M * self.weight).astype(np.float32)


def hstack_features(X: np.ndarray, L: sparse.spmatrix) -> sparse.csr_matrix:
    """The embedding ``X`` [n, d] and the lexical rows ``L`` [n, m] side by side: sparse [n, d + m]."""
    if X.shape[0] != L.shape[0]:
        raise ConfigError(f"{X.shape[0]} embedding rows but {L.shape[0]} lexical rows")
    return sparse.hstack([sparse.csr_matrix(X), L], format="csr")
