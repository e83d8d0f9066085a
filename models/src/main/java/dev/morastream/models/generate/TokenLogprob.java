package dev.morastream.models.generate;

/**
 * One token's log-probability under the model's raw next-token distribution (log-softmax of the
 * logits: temperature 1, before top-p), with the most likely alternatives at its position.
 *
 * @param id the token
 * @param logprob its log-probability in nats; {@link Double#NaN} for the first token of a prompt,
 *     which nothing predicts
 * @param topIds the {@code k} most likely ids at this position, most likely first (empty when not asked)
 * @param topLogprobs their log-probabilities, same order
 */
public record TokenLogprob(int id, double logprob, int[] topIds, double[] topLogprobs) {
    public TokenLogprob {
        if (topIds.length != topLogprobs.length) {
            throw new IllegalArgumentException("topIds and topLogprobs differ in length");
        }
        topIds = topIds.clone();
        topLogprobs = topLogprobs.clone();
    }

    /** Whether the model predicted this token (false for a prompt's first token). */
    public boolean scored() {
        return !Double.isNaN(logprob);
    }

    /**
     * Log-softmax of one position's logits in double precision: the entry of {@code id} and the
     * {@code top} largest (ties: lower id first).
     */
    public static TokenLogprob of(float[] logits, int id, int top) {
        double max = Double.NEGATIVE_INFINITY;
        for (float l : logits) {
            if (!Float.isFinite(l)) {
                throw new IllegalStateException("non-finite logit " + l);
            }
            max = Math.max(max, l);
        }
        double sum = 0;
        for (float l : logits) {
            sum += Math.exp(l - max);
        }
        double lse = max + Math.log(sum);
        int k = Math.min(top, logits.length);
        int[] ids = new int[k];
        double[] lps = new double[k];
        if (k > 0) {
            // partial selection: keep the k best in descending order (k is small)
            int filled = 0;
            for (int i = 0; i < logits.length; i++) {
                float l = logits[i];
                if (filled == k && l <= logits[ids[k - 1]]) {
                    continue;
                }
                int pos = filled < k ? filled++ : k - 1;
                while (pos > 0 && logits[ids[pos - 1]] < l) {
                    ids[pos] = ids[pos - 1];
                    pos--;
                }
                ids[pos] = i;
            }
            for (int j = 0; j < k; j++) {
                lps[j] = logits[ids[j]] - lse;
            }
        }
        return new TokenLogprob(id, logits[id] - lse, ids, lps);
    }

    /** The first token of a prompt: nothing predicts it. */
    public static TokenLogprob unscored(int id) {
        return new TokenLogprob(id, Double.NaN, new int[0], new double[0]);
    }
}
