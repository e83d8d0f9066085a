package dev.morastream.models.train;

/**
 * Settings of full pretraining.
 *
 * @param steps optimizer updates
 * @param batchSize sequences per step
 * @param seqLen tokens per sequence (at most the model's context)
 * @param lr peak learning rate
 * @param warmupSteps linear warmup
 * @param minLrRatio cosine floor as a fraction of {@code lr}
 * @param weightDecay AdamW decay of matrices (norms and embeddings are not decayed)
 * @param clipNorm global gradient-norm clip (0 = off)
 * @param seed data order and initialisation
 * @param evalEvery steps between held-out evaluations (0 = only at the end)
 * @param logEvery steps between progress reports
 */
public record PretrainConfig(
        int steps,
        int batchSize,
        int seqLen,
        double lr,
        int warmupSteps,
        double minLrRatio,
        double weightDecay,
        double clipNorm,
        long seed,
        int evalEvery,
        int logEvery) {

    /** What the shipped tiny model was trained with. */
    public static PretrainConfig tinyDefaults() {
        return new PretrainConfig(1500, 8, 256, 3e-3, 60, 0.1, 0.1, 1.0, 1234, 250, 10);
    }
}
