package dev.morastream.models.bench;

import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.eval.TextMetrics;
import dev.morastream.models.generate.GenerationConfig;
import dev.morastream.models.generate.Generator;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.models.train.IncrementalTrainer;
import dev.morastream.models.train.StepResult;
import dev.morastream.models.train.TrainBatch;
import dev.morastream.models.train.TrainerConfig;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.UUID;
import java.util.function.Consumer;

/**
 * The paper's memorisation task: random UUID pairs as {@code key:value} text, trained on all of
 * them every step (loss over the whole string); every {@code evalEvery} steps the greedy completion
 * of each {@code key:} is compared with its value by character accuracy and exact match.
 */
public final class MemorizeBench {
    /** One evaluation point. */
    public record Point(String method, String variant, int rank, long trainableParams, long step, double loss,
            double charAcc, double exactMatch, double lr, double seconds) {}

    /** A UUID pair. */
    public record Pair(String key, String value) {}

    private MemorizeBench() {}

    /** {@code n} pairs drawn from {@code seed}. */
    public static List<Pair> pairs(int n, long seed) {
        Random r = new Random(seed);
        List<Pair> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            out.add(new Pair(new UUID(r.nextLong(), r.nextLong()).toString(), new UUID(r.nextLong(), r.nextLong()).toString()));
        }
        return out;
    }

    /** All pairs as one batch: {@code BOS key:value EOS}, equal lengths (UUIDs are 36 chars). */
    public static TrainBatch batch(List<Pair> pairs, TextTokenizer tok) {
        int[][] rows = new int[pairs.size()][];
        int len = -1;
        for (int i = 0; i < rows.length; i++) {
            int[] row = tok.encodeFramed(pairs.get(i).key() + ":" + pairs.get(i).value(), true);
            rows[i] = row;
            len = Math.max(len, row.length);
        }
        float[][] mask = new float[rows.length][len - 1];
        int pad = tok.pad() >= 0 ? tok.pad() : (tok.eos().isEmpty() ? 0 : tok.eos().iterator().next());
        for (int i = 0; i < rows.length; i++) {
            int[] full = java.util.Arrays.copyOf(rows[i], len);
            for (int j = rows[i].length; j < len; j++) {
                full[j] = pad;
            }
            for (int j = 0; j < len - 1; j++) {
                mask[i][j] = j + 1 < rows[i].length ? 1f : 0f;
            }
            rows[i] = full;
        }
        return new TrainBatch(rows, mask, null);
    }

    /** Mean character accuracy and exact match of greedy completions of {@code key:}. */
    public static double[] score(Generator gen, List<Pair> pairs) {
        double ca = 0;
        double em = 0;
        GenerationConfig cfg = new GenerationConfig(40, 0, 1.0, 0, List.of(), true);
        for (Pair p : pairs) {
            String got = gen.generate(p.key() + ":", cfg, s -> { }).text();
            ca += TextMetrics.charAccuracy(got, p.value());
            em += TextMetrics.exactMatch(got, p.value()) ? 1 : 0;
        }
        return new double[] {ca / pairs.size(), em / pairs.size()};
    }

    /** Trains {@code spec} on the pairs for {@code steps} steps, reporting every {@code evalEvery}. */
    public static List<Point> run(LlamaModel model, TextTokenizer tok, AdapterSpec spec, TrainerConfig cfg, int pairs,
            int steps, int evalEvery, long seed, Consumer<Point> sink) {
        return run(model, tok, spec, cfg, pairs, steps, evalEvery, seed, sink, null);
    }

    /** As above; when {@code saveAdapter} is given, the trained adapter is written there (PEFT layout). */
    public static List<Point> run(LlamaModel model, TextTokenizer tok, AdapterSpec spec, TrainerConfig cfg, int pairs,
            int steps, int evalEvery, long seed, Consumer<Point> sink, java.nio.file.Path saveAdapter) {
        List<Pair> data = pairs(pairs, seed);
        TrainBatch batch = batch(data, tok);
        List<Point> out = new ArrayList<>();
        long t0 = System.nanoTime();
        try (IncrementalTrainer tr = new IncrementalTrainer(model, spec, cfg.withMeasureAfter(false))) {
            Generator gen = new Generator(model, tok, tr.op());
            String variant = spec.method() == AdapterSpec.Method.MORA ? spec.resolvedVariant().id() : "";
            long params = tr.adapters().trainableParameters();
            double[] s0 = score(gen, data);
            Point p0 = new Point(spec.method().id(), variant, spec.r(), params, 0, tr.evaluate(batch), s0[0], s0[1], cfg.lr(), 0);
            out.add(p0);
            sink.accept(p0);
            for (int step = 1; step <= steps; step++) {
                StepResult r = tr.step(batch);
                if (step % evalEvery == 0 || step == steps) {
                    double[] s = score(gen, data);
                    Point p = new Point(spec.method().id(), variant, spec.r(), params, step, r.lossBefore(), s[0], s[1],
                            cfg.lr(), (System.nanoTime() - t0) / 1e9);
                    out.add(p);
                    sink.accept(p);
                }
            }
            if (saveAdapter != null) {
                try {
                    dev.morastream.models.adapters.AdapterFiles.save(tr.adapters(), saveAdapter, "");
                } catch (java.io.IOException e) {
                    throw new java.io.UncheckedIOException("cannot write adapter to " + saveAdapter, e);
                }
            }
        }
        return out;
    }
}
