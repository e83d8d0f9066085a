package dev.morastream.models.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.morastream.models.adapters.AdapterSet;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.llama.Autograd;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.llama.Scalars;
import dev.morastream.models.llama.Tensors;
import java.lang.ref.ReferenceQueue;
import java.lang.ref.WeakReference;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * A full GC between a forward and its backward changes no gradient. DJL's number overloads
 * ({@code mul(Number)}, {@code div(Number)}) hand autograd a scalar over a Java direct buffer that
 * a GC frees; the backward then multiplies by garbage. Every scalar on a recorded graph is an
 * engine-owned tensor ({@link Scalars}), so these gradients are bit-identical with or without GC.
 */
class GcSafeGradientsTest {
    private enum Gc { NONE, INSIDE_FORWARD, BEFORE_BACKWARD }

    @Test
    void moraGradientsSurviveAFullGc() {
        check(AdapterSpec.mora(4, MoraVariant.ROTATION).withDropout(0.1));
        check(AdapterSpec.mora(4, MoraVariant.SHARING));
    }

    @Test
    void loraGradientsSurviveAFullGc() {
        check(AdapterSpec.lora(4, 8).withDropout(0.1));
    }

    private static void check(AdapterSpec spec) {
        List<float[]> plain = gradients(spec, Gc.NONE);
        List<float[]> inside = gradients(spec, Gc.INSIDE_FORWARD);
        List<float[]> before = gradients(spec, Gc.BEFORE_BACKWARD);
        assertEquals(plain.size(), inside.size());
        double norm = 0;
        for (int i = 0; i < plain.size(); i++) {
            assertArrayEquals(plain.get(i), inside.get(i), spec.label() + ": gradient " + i + " changed by a GC inside the forward");
            assertArrayEquals(plain.get(i), before.get(i), spec.label() + ": gradient " + i + " changed by a GC before backward");
            for (float g : plain.get(i)) {
                assertTrue(Float.isFinite(g), spec.label() + ": non-finite gradient");
                norm += g * g;
            }
        }
        assertTrue(norm > 0, spec.label() + ": every gradient is zero (the test would prove nothing)");
    }

    /** Every trainable gradient of one loss (mean NLL / 2, as with gradient accumulation of 2). */
    private static List<float[]> gradients(AdapterSpec spec, Gc gc) {
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.fromTensors(IncrementalTrainerTest.C, IncrementalTrainerTest.base(3), root);
                AdapterSet set = AdapterSet.create(model, spec)) {
            Random rnd = new Random(5);
            for (NDArray a : set.trainable().values()) { // non-zero adapters: every gradient path is exercised
                float[] v = new float[(int) a.size()];
                for (int i = 0; i < v.length; i++) {
                    v[i] = (float) (rnd.nextGaussian() * 0.05);
                }
                Tensors.assign(a, v);
                a.setRequiresGradient(true);
            }
            String gcAt = "model.layers.1.self_attn.q_proj"; // after layer 0's attention scale and LoRA scale
            LinearOp op = (module, x, w, b) -> {
                if (gc == Gc.INSIDE_FORWARD && module.equals(gcAt)) {
                    fullGc();
                }
                return set.op().apply(module, x, w, b);
            };
            TrainBatch batch = IncrementalTrainerTest.batch(0);
            int[][] x = new int[batch.tokens().length][];
            int[][] y = new int[batch.tokens().length][];
            for (int i = 0; i < x.length; i++) {
                x[i] = java.util.Arrays.copyOf(batch.tokens()[i], batch.tokens()[i].length - 1);
                y[i] = java.util.Arrays.copyOfRange(batch.tokens()[i], 1, batch.tokens()[i].length);
            }
            List<float[]> out = new ArrayList<>();
            try (NDManager step = model.manager().newSubManager()) {
                NDArray mask = step.ones(new Shape(x.length, x[0].length)); // (B, T)
                set.setTraining(true);
                set.seedDropout(7);
                try (Autograd.Recording rec = Autograd.record()) {
                    NDArray loss = Scalars.div(Losses.mean(model.forward(model.ids(step, x), null, op), model.ids(step, y), mask), 2); // ()
                    if (gc == Gc.BEFORE_BACKWARD) {
                        fullGc();
                    }
                    rec.backward(loss);
                } finally {
                    set.setTraining(false);
                }
                for (Map.Entry<String, NDArray> e : set.trainable().entrySet()) {
                    NDArray g = e.getValue().getGradient(); // shape of the parameter
                    out.add(g.toFloatArray());
                    g.close();
                }
            }
            set.trainable().values().forEach(a -> a.setRequiresGradient(false));
            return out;
        }
    }

    /** Returns once a weakly-referenced direct buffer has been collected and its memory freed. */
    static void fullGc() {
        ReferenceQueue<ByteBuffer> q = new ReferenceQueue<>();
        WeakReference<ByteBuffer> ref = new WeakReference<>(ByteBuffer.allocateDirect(64), q);
        long deadline = System.nanoTime() + 10_000_000_000L;
        try {
            while (q.remove(50) == null) {
                System.gc();
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("no GC collected a dropped direct buffer within 10 s");
                }
            }
            // direct buffers are freed by their cleaner on the reference handler thread: let it run
            for (int i = 0; i < 3; i++) {
                System.gc();
                Thread.sleep(20);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        assertTrue(ref.get() == null);
    }
}
