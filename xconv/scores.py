"""What a gradient or a class score is taken of, shared by every method that needs one.

"logit" is the pre-softmax score y_c (Selvaraju et al.); "contrast" is y_c minus the mean of the other
logits, the log-odds of c for a two-class softmax, whose logits are only defined up to a shared shift;
"auto" picks "contrast" for two classes and "logit" otherwise.
"""

from __future__ import annotations

from xconv.options import Option

SCORES = ("auto", "logit", "contrast")

SCORE_OPTION = Option("score", str, "auto", "what the class score is: logit, contrast (log-odds) or auto",
                      choices=SCORES)


def resolve_score(score: str, class_count: int) -> str:
    """'auto' -> 'contrast' for two classes, 'logit' otherwise."""
    if score == "auto":
        return "contrast" if class_count == 2 else "logit"
    return score


def class_scores(logits, chosen, score: str):
    """Each row's score for its chosen class (a tensor op): the logit, or the logit minus the mean of the others."""
    import tensorflow as tf

    scores = tf.gather(logits, chosen, axis=1, batch_dims=1)
    if score == "contrast":
        others = (tf.reduce_sum(logits, axis=1) - scores) / tf.cast(tf.shape(logits)[1] - 1, logits.dtype)
        scores = scores - others
    return scores
