package dev.morastream.actors.supervisor;

import java.util.Map;

/**
 * What the evaluator measured for one adapter (or the base model), on the same sets for the
 * candidate, the adapter in service and the base.
 *
 * @param memorizationCharAcc character accuracy of greedy answers on trained prompt/completion facts (higher is better)
 * @param memorizationLoss mean loss on a reservoir of trained text (lower is better)
 * @param downstream accuracy per downstream task set (higher is better)
 * @param retentionLoss mean loss on the base model's held-out general set (lower is better)
 * @param memorizationExactMatch share of those facts answered exactly (higher is better; NaN when no facts)
 * @param progressiveLoss the trainer's mean before-update loss on the batches since the previous
 *     checkpoint (the candidate only; NaN for the adapter in service)
 * @param klToBase mean forward KL(p_base || p_adapter) of the next-token distributions over the
 *     evaluator's fixed prompt set (0 for the base itself; NaN when not measured)
 */
public record Scores(double memorizationCharAcc, double memorizationLoss, Map<String, Double> downstream, double retentionLoss,
                     double memorizationExactMatch, double progressiveLoss, double klToBase) {
    public Scores {
        downstream = Map.copyOf(downstream);
    }

    /** Without exact match, progressive loss and KL (NaN). */
    public Scores(double memorizationCharAcc, double memorizationLoss, Map<String, Double> downstream, double retentionLoss) {
        this(memorizationCharAcc, memorizationLoss, downstream, retentionLoss, Double.NaN, Double.NaN, Double.NaN);
    }

    /** The same scores with the trainer's progressive loss. */
    public Scores withProgressiveLoss(double loss) {
        return new Scores(memorizationCharAcc, memorizationLoss, downstream, retentionLoss, memorizationExactMatch, loss, klToBase);
    }

    /** The same scores with a KL to the base. */
    public Scores withKlToBase(double kl) {
        return new Scores(memorizationCharAcc, memorizationLoss, downstream, retentionLoss, memorizationExactMatch, progressiveLoss, kl);
    }

    /**
     * Whether every score the gate judges is finite (memorisation, downstream, retention); the
     * character accuracy may be NaN, which means no facts were sampled (a domain of plain text).
     * The KL is judged by the gate's own bound.
     */
    public boolean finite() {
        return !Double.isInfinite(memorizationCharAcc) && Double.isFinite(memorizationLoss) && Double.isFinite(retentionLoss)
                && downstream.values().stream().allMatch(Double::isFinite);
    }

    /**
     * The largest drop of a downstream set of {@code reference} in these scores (positive: worse;
     * a set not scored here counts as a drop to 0); 0 when {@code reference} has no sets.
     */
    public double worstDownstreamDrop(Scores reference) {
        double worst = 0;
        for (Map.Entry<String, Double> e : reference.downstream().entrySet()) {
            worst = Math.max(worst, e.getValue() - downstream.getOrDefault(e.getKey(), 0.0));
        }
        return worst;
    }
}
