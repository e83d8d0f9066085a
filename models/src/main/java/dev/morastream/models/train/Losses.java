package dev.morastream.models.train;

import ai.djl.ndarray.NDArray;
import dev.morastream.models.llama.Scalars;

/** Next-token cross-entropy on logits. */
public final class Losses {
    private Losses() {}

    /**
     * Sum of the negative log-likelihoods of {@code targets}, and the number of counted tokens.
     *
     * @param logits {@code (B, T, V)}
     * @param targets {@code (B, T)} int64 ids to predict at each position
     * @param mask {@code (B, T)} float32, 1 where the position counts, 0 elsewhere; {@code null}
     *     counts every position
     * @return the summed loss, a scalar in the manager of {@code logits}
     */
    public static NDArray nllSum(NDArray logits, NDArray targets, NDArray mask) {
        NDArray logp = logits.logSoftmax(-1); // (B, T, V)
        NDArray picked = logp.gather(targets.expandDims(-1), -1).squeeze(-1); // (B, T)
        NDArray nll = picked.neg(); // (B, T)
        if (mask != null) {
            nll = nll.mul(mask);
        }
        return nll.sum(); // ()
    }

    /** Mean next-token loss over the counted positions. */
    public static NDArray mean(NDArray logits, NDArray targets, NDArray mask) {
        NDArray sum = nllSum(logits, targets, mask);
        float count = mask == null ? targets.size() : Math.max(1f, mask.sum().getFloat());
        return Scalars.div(sum, count); // an engine-owned scalar: the backward of div keeps it
    }
}
