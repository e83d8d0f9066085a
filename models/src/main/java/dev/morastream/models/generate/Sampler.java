package dev.morastream.models.generate;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Picks the next token from one position's logits, on the CPU: argmax when greedy, otherwise
 * temperature then nucleus (top-p) sampling with a seeded {@link SplittableRandom}. One sampler
 * serves one generation; it draws exactly one random number per sampled token, so the same seed
 * and the same logits give the same tokens.
 */
final class Sampler {
    private final double temperature;
    private final double topP;
    private final SplittableRandom rng;

    Sampler(GenerationConfig cfg) {
        this.temperature = cfg.temperature();
        this.topP = cfg.topP();
        this.rng = new SplittableRandom(cfg.seed());
    }

    /**
     * @param logits {@code (V)} scores of the next token
     * @return the chosen id
     */
    int next(float[] logits) {
        int best = argmax(logits);
        if (temperature <= 0) {
            return best;
        }
        double max = logits[best];
        double[] p = new double[logits.length]; // (V) unnormalised probabilities, p[best] = 1
        double total = 0;
        for (int i = 0; i < logits.length; i++) {
            p[i] = Math.exp((logits[i] - max) / temperature);
            total += p[i];
        }
        if (topP >= 1.0) {
            double u = rng.nextDouble() * total;
            double acc = 0;
            for (int i = 0; i < p.length; i++) {
                acc += p[i];
                if (u < acc) {
                    return i;
                }
            }
            return best; // only reachable through rounding at the very end
        }
        int[] order = descending(p);
        double target = topP * total;
        int kept = 0;
        double mass = 0;
        while (kept < order.length) {
            mass += p[order[kept++]];
            if (mass >= target) {
                break;
            }
        }
        double u = rng.nextDouble() * mass;
        double acc = 0;
        for (int k = 0; k < kept; k++) {
            acc += p[order[k]];
            if (u < acc) {
                return order[k];
            }
        }
        return order[kept - 1];
    }

    /** Index of the largest logit, the first one on ties; fails on NaN or infinite scores. */
    static int argmax(float[] logits) {
        int best = 0;
        for (int i = 0; i < logits.length; i++) {
            if (!Float.isFinite(logits[i])) {
                throw new IllegalStateException("logit of token " + i + " is " + logits[i]);
            }
            if (logits[i] > logits[best]) {
                best = i;
            }
        }
        return best;
    }

    /**
     * Indices by decreasing probability, lower index first on ties. Sorts primitive keys (the
     * float bits of a non-negative probability order like the value) to avoid boxing a large
     * vocabulary at every step.
     */
    private static int[] descending(double[] p) {
        long[] keys = new long[p.length];
        for (int i = 0; i < p.length; i++) {
            long bits = Float.floatToIntBits((float) p[i]);
            keys[i] = (bits << 32) | (Integer.MAX_VALUE - i);
        }
        Arrays.sort(keys);
        int[] order = new int[p.length];
        for (int k = 0; k < p.length; k++) {
            order[k] = Integer.MAX_VALUE - (int) keys[p.length - 1 - k];
        }
        return order;
    }
}
