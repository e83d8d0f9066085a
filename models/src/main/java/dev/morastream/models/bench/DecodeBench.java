package dev.morastream.models.bench;

import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.generate.DecodeBatch;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Cost of one continuous-batching decode step ({@link DecodeBatch#step}) of {@code rows} rows
 * when they are spread over {@code K} adapter versions, against the same rows on one version and on
 * the base model: what "rows of different versions share one forward" costs, without HTTP,
 * clients or prefill around it. Each round times the three batches one after the other (the base,
 * one version, K versions: the same prompt, greedy, no EOS stop), so that the ratios of a round
 * come from the same minute; the result is the median over rounds.
 */
public final class DecodeBench {
    /**
     * @param adapters versions the rows are spread over, row {@code i} on version {@code i mod K}
     *     (0: the base model)
     * @param msPerStep median over rounds of the round's mean step time
     * @param toOneVersion median over rounds of this round's time over the one-version batch's
     * @param toBase median over rounds of this round's time over the base batch's
     */
    public record Result(int rows, int adapters, String method, String variant, int rounds, int steps, double msPerStep,
            double toOneVersion, double toBase) {}

    private DecodeBench() {}

    /**
     * @param spec the adapters' method and shape; their trainable numbers are set at random
     *     (normal, std 0.01, seeded), so that each version changes the output
     * @param steps timed steps per batch and round, after the prefill and two untimed ones
     * @return three results: the base (adapters 0), one version, {@code k} versions
     */
    public static List<Result> run(LlamaModel model, TextTokenizer tokenizer, AdapterSpec spec, int rows, int k, int steps,
            int rounds) {
        requireValid(rows, k, steps, rounds);
        List<AdapterSet> sets = new ArrayList<>();
        try {
            for (int v = 0; v < k; v++) {
                sets.add(AdapterSet.create(model, spec.withSeed(v)).randomize(1000 + v, 0.01).freeze()); // as served: loadDetached freezes
            }
            int[] prompt = tokenizer.encodeFramed("Once upon a time", false);
            int[] spreads = {0, 1, k};
            double[][] ms = new double[spreads.length][rounds];
            for (int round = 0; round < rounds; round++) {
                for (int c = 0; c < spreads.length; c++) {
                    ms[c][round] = timeSteps(model, tokenizer, prompt, sets, spreads[c], rows, steps);
                }
            }
            List<Result> out = new ArrayList<>();
            for (int c = 0; c < spreads.length; c++) {
                double[] toOne = new double[rounds];
                double[] toBase = new double[rounds];
                for (int round = 0; round < rounds; round++) {
                    toOne[round] = ms[c][round] / ms[1][round];
                    toBase[round] = ms[c][round] / ms[0][round];
                }
                String method = spreads[c] == 0 ? "base" : spec.method().id();
                String variant = spreads[c] == 0 || spec.method() != AdapterSpec.Method.MORA ? "" : spec.resolvedVariant().id();
                out.add(new Result(rows, spreads[c], method, variant, rounds, steps, median(ms[c]), median(toOne), median(toBase)));
            }
            return out;
        } finally {
            sets.forEach(AdapterSet::close);
        }
    }

    /** Throws {@link IllegalArgumentException}, naming the values, unless {@link #run} can take them. */
    public static void requireValid(int rows, int k, int steps, int rounds) {
        if (rows < 1 || k < 2 || steps < 1 || rounds < 1) {
            throw new IllegalArgumentException("rows, steps and rounds must be positive and adapters at least 2: rows=" + rows
                    + " adapters=" + k + " steps=" + steps + " rounds=" + rounds);
        }
    }

    /** Mean ms of {@code steps} decode steps of {@code rows} rows, row {@code i} on version {@code i mod spread}. */
    private static double timeSteps(LlamaModel model, TextTokenizer tokenizer, int[] prompt, List<AdapterSet> sets, int spread,
            int rows, int steps) {
        try (DecodeBatch batch = new DecodeBatch(model, tokenizer, rows)) {
            List<DecodeBatch.Request> qs = new ArrayList<>(rows);
            GenerationConfig cfg = GenerationConfig.greedy(steps + 3).withStopOnEos(false);
            for (int i = 0; i < rows; i++) {
                LinearOp op = spread == 0 ? LinearOp.PLAIN : sets.get(i % spread).op();
                qs.add(new DecodeBatch.Request(prompt, cfg, op, null, s -> {}));
            }
            batch.join(qs); // the prefill
            batch.step(); // the first decode step: prepares the per-row adapter selection
            batch.step();
            long t0 = System.nanoTime();
            for (int s = 0; s < steps; s++) {
                batch.step();
            }
            return (System.nanoTime() - t0) / 1e6 / steps;
        }
    }

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        int n = s.length;
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    }
}
