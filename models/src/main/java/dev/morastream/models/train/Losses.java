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

    /**
     * Mean forward KL divergence {@code KL(p_ref || p) = sum_v p_ref (log p_ref - log p)} of the
     * next-token distributions over the counted positions. {@code refLogits} must carry no graph
     * (the frozen base's, computed without recording): only {@code logits} get gradients.
     *
     * @param logits {@code (B, T, V)} of the model being trained
     * @param refLogits {@code (B, T, V)} of the reference (the base model)
     * @param mask {@code (B, T)} float32, 1 where the position counts
     * @return a scalar in the manager of {@code logits}; 0 when no position counts
     */
    public static NDArray klMean(NDArray logits, NDArray refLogits, NDArray mask) {
        return Scalars.div(klSum(logits, refLogits, mask), Math.max(1f, mask.sum().getFloat()));
    }

    /** The sum over the counted positions of what {@link #klMean} averages. */
    public static NDArray klSum(NDArray logits, NDArray refLogits, NDArray mask) {
        NDArray logp = logits.logSoftmax(-1); // (B, T, V)
        NDArray logq = refLogits.logSoftmax(-1); // (B, T, V)
        NDArray kl = logq.exp().mul(logq.sub(logp)).sum(new int[] {-1}); // (B, T)
        return kl.mul(mask).sum(); // ()
    }
}
