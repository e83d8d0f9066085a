package dev.morastream.models.bench;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.llama.Autograd;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.train.IncrementalTrainer;
import dev.morastream.models.train.TrainBatch;
import dev.morastream.models.train.TrainerConfig;
import java.util.Arrays;
import java.util.Locale;
import java.util.Random;

/**
 * Cost of one training step of each method on the same model, batch and sequence length, and how
 * much of the machine it uses: the step's model FLOPs ({@link StepFlops}) per second against a
 * large fp32 matmul timed in the same process.
 */
public final class StepBench {
    /** Side of the square fp32 matmul that stands for the machine's peak. */
    public static final int PEAK_SIZE = 2048;

    /**
     * One measurement: median over the timed steps, after warm-up.
     *
     * @param dtype type of the base matmuls ({@link Dtype})
     * @param gflopPerStep model FLOPs of one step, {@link StepFlops}, in 1e9
     * @param gflopsPerS {@code gflopPerStep / (msPerStep / 1000)}
     * @param peakGflopsPerS the fp32 matmul's rate, {@link #peakGflopsPerS}
     * @param fractionOfPeak {@code gflopsPerS / peakGflopsPerS}
     * @param loss mean loss of the batch before training, base matmuls in {@code dtype}
     * @param lossDiffToF32 {@code loss} minus the same loss with fp32 matmuls (0 for F32)
     */
    public record Result(String method, String variant, long trainableParams, double msPerStep, double tokensPerS,
            String dtype, double gflopPerStep, double gflopsPerS, double peakGflopsPerS, double fractionOfPeak,
            double loss, double lossDiffToF32) {}

    /** Type of the base model's matmuls during the step. */
    public enum Dtype {
        F32(DataType.FLOAT32),
        BF16(DataType.BFLOAT16);

        private final DataType type;

        Dtype(DataType type) {
            this.type = type;
        }

        public DataType type() {
            return type;
        }

        public static Dtype parse(String s) {
            String k = s.trim().toUpperCase(Locale.ROOT);
            return switch (k) {
                case "F32", "FP32", "FLOAT32" -> F32;
                case "BF16", "BFLOAT16" -> BF16;
                default -> throw new IllegalArgumentException("dtype must be F32 or BF16, got '" + s + "'");
            };
        }
    }

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

    /**
     * Throws {@link UnsupportedOperationException}, saying why, unless the step can run with
     * {@code dtype} matmuls on this engine. BF16 cannot: the CPU has AVX-512-BF16 and AMX-BF16 and
     * libtorch 2.7.1 multiplies bf16 there, but DJL 0.36's PyTorch JNI maps DJL data types to
     * libtorch's by a table without bfloat16 ({@code utils::GetScalarTypeFromDType}, whose default
     * is a bare {@code throw;}): the first {@code toType(BFLOAT16)} or bf16 tensor creation ends the
     * JVM with {@code std::terminate} ("terminate called without an active exception", seen
     * here). So this refuses before touching the engine rather than probing it.
     */
    public static void requireSupported(Dtype dtype, LlamaModel model) {
        if (dtype == Dtype.F32) {
            return;
        }
        Engine e = Engine.getInstance();
        throw new UnsupportedOperationException("--dtype " + dtype + " is not available: " + e.getEngineName() + " "
                + e.getVersion() + " through DJL " + Engine.getDjlVersion() + " has no " + dtype.type()
                + " in its JNI type table (any bf16 cast aborts the JVM), although the CPU has AVX-512-BF16; use F32");
    }

    /**
     * GFLOP/s of an {@code n x n} fp32 matmul ({@code 2 n^3} FLOPs) on the model's device: the
     * fastest of {@code reps} after two untimed ones. Stands for the machine's attainable peak.
     */
    public static double peakGflopsPerS(LlamaModel model, int n, int reps) {
        Autograd.off();
        try (NDManager m = model.manager().newSubManager()) {
            NDArray a = m.randomUniform(-1f, 1f, new Shape(n, n)); // (n, n)
            NDArray b = m.randomUniform(-1f, 1f, new Shape(n, n)); // (n, n)
            double best = Double.MAX_VALUE;
            for (int i = 0; i < reps + 2; i++) {
                long t0 = System.nanoTime();
                NDArray c = a.matMul(b); // (n, n)
                c.getFloat(0, 0); // synchronous on CPU; waits for the product on a GPU
                long ns = System.nanoTime() - t0;
                c.close();
                if (i >= 2) {
                    best = Math.min(best, ns);
                }
            }
            return 2.0 * n * n * (double) n / best;
        }
    }

    /** {@link #measure(LlamaModel, AdapterSpec, TrainBatch, int, int, Dtype, double)} in F32, peak not measured (NaN). */
    public static Result measure(LlamaModel model, AdapterSpec spec, TrainBatch batch, int warmup, int steps) {
        return measure(model, spec, batch, warmup, steps, Dtype.F32, Double.NaN);
    }

    /**
     * Times {@code steps} training steps after {@code warmup} untimed ones, base matmuls in {@code
     * dtype} ({@link #requireSupported} first), and rates the median against {@code
     * peakGflopsPerS}.
     */
    public static Result measure(LlamaModel model, AdapterSpec spec, TrainBatch batch, int warmup, int steps, Dtype dtype,
            double peakGflopsPerS) {
        if (steps < 1) {
            throw new IllegalArgumentException("steps must be at least 1, got " + steps);
        }
        requireSupported(dtype, model);
        try (IncrementalTrainer tr = new IncrementalTrainer(model, spec, TrainerConfig.constant(1e-4).withMeasureAfter(false))) {
            double lossF32 = tr.evaluate(batch);
            double loss = lossF32; // the only dtype that runs (requireSupported): F32
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
            int rows = batch.tokens().length;
            int seqLen = batch.tokens()[0].length - 1;
            double gflop = StepFlops.of(model.config(), spec, rows, seqLen).total() / 1e9;
            double rate = gflop / (med / 1000.0);
            return new Result(spec.method().id(), variant, tr.adapters().trainableParameters(), med,
                    batch.predictions() / (med / 1000.0), dtype.name(), gflop, rate, peakGflopsPerS, rate / peakGflopsPerS,
                    loss, loss - lossF32);
        }
    }
}
