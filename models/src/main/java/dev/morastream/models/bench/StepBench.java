package dev.morastream.models.bench;

import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.train.IncrementalTrainer;
import dev.morastream.models.train.TrainBatch;
import dev.morastream.models.train.TrainerConfig;
import java.util.Arrays;
import java.util.Random;

/** Cost of one training step of each method on the same model, batch and sequence length. */
public final class StepBench {
    /** One measurement: median over the timed steps, after warm-up. */
    public record Result(String method, String variant, long trainableParams, double msPerStep, double tokensPerS) {}

    private StepBench() {}

    public static TrainBatch randomBatch(int rows, int seqLen, int vocab, long seed) {
        Random r = new Random(seed);
        int[][] t = new int[rows][seqLen + 1];
        for (int[] row : t) {
            for (int j = 0; j < row.length; j++) {
                row[j] = r.nextInt(Math.min(vocab, 256));
            }
        }
        return TrainBatch.of(t);
    }

    public static Result measure(LlamaModel model, AdapterSpec spec, TrainBatch batch, int warmup, int steps) {
        try (IncrementalTrainer tr = new IncrementalTrainer(model, spec, TrainerConfig.constant(1e-4).withMeasureAfter(false))) {
            for (int i = 0; i < warmup; i++) {
                tr.step(batch);
            }
            double[] ms = new double[steps];
            for (int i = 0; i < steps; i++) {
                ms[i] = tr.step(batch).millis();
            }
            Arrays.sort(ms);
            double med = ms[steps / 2];
            String variant = spec.method() == AdapterSpec.Method.MORA ? spec.resolvedVariant().id() : "";
            return new Result(spec.method().id(), variant, tr.adapters().trainableParameters(), med,
                    batch.predictions() / (med / 1000.0));
        }
    }
}
