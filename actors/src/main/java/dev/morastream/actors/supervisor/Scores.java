package dev.morastream.actors.supervisor;

import java.util.Map;

/**
 * What the evaluator measured for one adapter (or the base model), on the same sets for the
 * candidate and the adapter in service.
 *
 * @param memorizationCharAcc character accuracy of greedy answers on trained prompt/completion facts (higher is better)
 * @param memorizationLoss mean loss on a reservoir of trained text (lower is better)
 * @param downstream accuracy per downstream task set (higher is better)
 * @param retentionLoss mean loss on the base model's held-out general set (lower is better)
 * @param memorizationExactMatch share of those facts answered exactly (higher is better; NaN when no facts)
 * @param progressiveLoss the trainer's mean before-update loss on the batches since the previous
 *     checkpoint (the candidate only; NaN for the adapter in service)
 */
public record Scores(double memorizationCharAcc, double memorizationLoss, Map<String, Double> downstream, double retentionLoss,
                     double memorizationExactMatch, double progressiveLoss) {
    public Scores {
        downstream = Map.copyOf(downstream);
    }

    /** Without exact match and progressive loss (NaN). */
    public Scores(double memorizationCharAcc, double memorizationLoss, Map<String, Double> downstream, double retentionLoss) {
        this(memorizationCharAcc, memorizationLoss, downstream, retentionLoss, Double.NaN, Double.NaN);
    }

    /** The same scores with the trainer's progressive loss. */
    public Scores withProgressiveLoss(double loss) {
        return new Scores(memorizationCharAcc, memorizationLoss, downstream, retentionLoss, memorizationExactMatch, loss);
    }

    /**
     * Whether every score the gate judges is finite (memorisation, downstream, retention); the
     * character accuracy may be NaN, which means no facts were sampled (a domain of plain text).
     */
    public boolean finite() {
        return !Double.isInfinite(memorizationCharAcc) && Double.isFinite(memorizationLoss) && Double.isFinite(retentionLoss)
                && downstream.values().stream().allMatch(Double::isFinite);
    }
}
