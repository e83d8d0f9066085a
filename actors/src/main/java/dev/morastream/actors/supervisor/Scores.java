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
 */
public record Scores(double memorizationCharAcc, double memorizationLoss, Map<String, Double> downstream, double retentionLoss) {
    public Scores {
        downstream = Map.copyOf(downstream);
    }

    /** Whether every number is finite. */
    public boolean finite() {
        return Double.isFinite(memorizationCharAcc) && Double.isFinite(memorizationLoss) && Double.isFinite(retentionLoss)
                && downstream.values().stream().allMatch(Double::isFinite);
    }
}
