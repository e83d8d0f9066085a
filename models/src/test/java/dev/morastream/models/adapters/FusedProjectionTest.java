package dev.morastream.models.adapters;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.morastream.models.checkpoint.Tensor;
import dev.morastream.models.llama.Autograd;
import dev.morastream.models.llama.LinearOp;
import dev.morastream.models.llama.LlamaConfig;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.llama.Tensors;
import dev.morastream.models.llama.TestWeights;
import dev.morastream.models.train.Losses;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Naive reference for the fused projections: the model computes q/k/v (and gate/up) as one GEMM
 * over their concatenated frozen weights and adds each module's own update to its slice. Against
 * the same op forced through one {@code apply} per module (a wrapper that does not declare {@link
 * LinearOp#sharesBase}), logits and every trainable's gradient agree for LoRA and every MoRA
 * variant, on all seven modules and on a subset (an update on q only changes q), with and without
 * dropout, on few rows (MoRA's compress path) and many (rotation's per-block matrices).
 */
class FusedProjectionTest {
    static final LlamaConfig C = LlamaConfig.micro(61); // GQA: q 32x32, k/v 16x32, gate/up 48x32, down 32x48

    static Stream<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        List<AdapterSpec> specs = new ArrayList<>(AdapterModelTest.everyMethod());
        for (AdapterSpec s : specs) {
            for (int rows : new int[] {5, 36}) {
                out.add(Arguments.of(label(s), s, rows));
            }
        }
        AdapterSpec qv = new AdapterSpec(AdapterSpec.Method.MORA, MoraVariant.ROTATION, 3, 3, 0.0, List.of("q_proj", "v_proj", "up_proj"),
                AdapterSpec.DEFAULT_ROTATION_THRESHOLD, 0);
        out.add(Arguments.of("rotation on q,v,up only", qv, 36));
        AdapterSpec lq = new AdapterSpec(AdapterSpec.Method.LORA, null, 3, 6, 0.0, List.of("k_proj", "gate_proj"),
                AdapterSpec.DEFAULT_ROTATION_THRESHOLD, 0);
        out.add(Arguments.of("lora on k,gate only", lq, 36));
        out.add(Arguments.of("sharing with dropout", AdapterSpec.mora(3, MoraVariant.SHARING).withDropout(0.3), 36));
        out.add(Arguments.of("lora with dropout", AdapterSpec.lora(3, 6).withDropout(0.3), 36));
        return out.stream();
    }

    static String label(AdapterSpec s) {
        return s.method() == AdapterSpec.Method.MORA ? s.resolvedVariant().id() : s.method().id();
    }

    /** The same op, but the model must call {@code apply} once per module. */
    static LinearOp separate(LinearOp op) {
        return (module, x, w, b) -> op.apply(module, x, w, b);
    }

    record Pass(float[] logits, Map<String, float[]> grads) {}

    static Pass pass(LlamaModel model, AdapterSet set, LinearOp op, int[][] ids, boolean training) {
        set.setTraining(training);
        set.seedDropout(7);
        Map<String, float[]> grads = new LinkedHashMap<>();
        float[] logits;
        try (NDManager m = model.manager().newSubManager()) {
            NDArray x = model.ids(m, ids);
            try (Autograd.Recording rec = Autograd.record()) {
                NDArray out = model.forward(x, null, op); // (B, T, V)
                logits = out.toFloatArray();
                NDArray y = model.ids(m, shifted(ids));
                rec.backward(Losses.mean(out, y, null));
            }
            for (Map.Entry<String, NDArray> e : set.trainable().entrySet()) {
                NDArray g = e.getValue().getGradient();
                grads.put(e.getKey(), g.toFloatArray());
                g.close();
            }
            dev.morastream.models.train.Gradients.zero(set.trainable().values());
        } finally {
            set.setTraining(false);
        }
        return new Pass(logits, grads);
    }

    static int[][] shifted(int[][] ids) {
        int[][] y = new int[ids.length][];
        for (int i = 0; i < ids.length; i++) {
            y[i] = new int[ids[i].length];
            for (int j = 0; j < ids[i].length; j++) {
                y[i][j] = ids[i][(j + 1) % ids[i].length];
            }
        }
        return y;
    }

    static int[][] ids(int rows, long seed) {
        int b = rows >= 12 ? 4 : 1;
        int t = rows / b;
        Random r = new Random(seed);
        int[][] ids = new int[b][t];
        for (int[] row : ids) {
            for (int j = 0; j < t; j++) {
                row[j] = r.nextInt(C.vocabSize());
            }
        }
        return ids;
    }

    static double maxRel(float[] a, float[] b) {
        assertEquals(a.length, b.length);
        double d = 0;
        double scale = 1e-6;
        for (int i = 0; i < a.length; i++) {
            d = Math.max(d, Math.abs(a[i] - b[i]));
            scale = Math.max(scale, Math.abs(b[i]));
        }
        return d / scale;
    }

    @ParameterizedTest(name = "{0}, {2} rows")
    @MethodSource("cases")
    void fusedEqualsSeparateInForwardAndGradients(String label, AdapterSpec spec, int rows) {
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.fromTensors(C, TestWeights.random(C, 11, 0.2, 0.1), root);
                AdapterSet set = AdapterSet.create(model, spec)) {
            AdapterModelTest.randomize(set, 5);
            set.trainable().values().forEach(a -> a.setRequiresGradient(true));
            int[][] ids = ids(rows, 3);
            boolean training = spec.dropout() > 0;
            Pass fused = pass(model, set, set.op(), ids, training);
            Pass alone = pass(model, set, separate(set.op()), ids, training);
            double dl = maxRel(fused.logits(), alone.logits());
            assertTrue(dl < 1e-5, label + ": logits differ by " + dl + " (relative to their largest)");
            for (String k : alone.grads().keySet()) {
                double dg = maxRel(fused.grads().get(k), alone.grads().get(k));
                assertTrue(dg < 1e-4, label + ": gradient of " + k + " differs by " + dg);
            }
            float[] base = AdapterModelTest.logits(model, LinearOp.PLAIN);
            assertTrue(AdapterModelTest.maxDiff(base, AdapterModelTest.logits(model, set)) > 1e-3, "degenerate: the adapters change nothing");
        }
    }

    @Test
    void moduleWeightsAreViewsOfTheFusedOnesSoInPlaceWritesReachTheFusedGemm() {
        Map<String, Tensor> w = TestWeights.random(C, 11, 0.2, 0.1);
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.fromTensors(C, w, root)) {
            float[] before = AdapterModelTest.logits(model, LinearOp.PLAIN);
            assertEquals(0.0, AdapterModelTest.maxDiff(before, AdapterModelTest.logits(model, separate(LinearOp.PLAIN))), 1e-5);
            // as full fine-tuning, merges and ReMoRA write a module's weight: in place
            for (String mod : List.of("model.layers.1.self_attn.k_proj", "model.layers.0.mlp.up_proj")) {
                NDArray a = model.weight(mod + ".weight");
                float[] v = a.toFloatArray();
                for (int i = 0; i < v.length; i++) {
                    v[i] = -v[i] * 1.5f;
                }
                Tensors.assign(a, v);
            }
            float[] fused = AdapterModelTest.logits(model, LinearOp.PLAIN);
            float[] alone = AdapterModelTest.logits(model, separate(LinearOp.PLAIN));
            assertTrue(AdapterModelTest.maxDiff(before, fused) > 1e-2, "the write changed nothing");
            assertTrue(maxRel(fused, alone) < 1e-5, "fused GEMM and per-module GEMMs disagree after an in-place write");
            // the checkpoint view of the model is unchanged: same names, shapes, order and count
            assertEquals(List.copyOf(LlamaModel.expectedWeights(C).keySet()), List.copyOf(model.weights().keySet()));
            long n = LlamaModel.expectedWeights(C).values().stream().mapToLong(Tensor::numel).sum();
            assertEquals(n, model.parameterCount());
            assertFalse(model.weights().keySet().stream().anyMatch(k -> k.contains("qkv") || k.contains("gate_up")));
        }
    }

    @Test
    void trainedModuleWeightsGetTheirOwnGradients() {
        // pretraining and full fine-tuning train the module arrays themselves: the model must not route around them
        try (NDManager root = NDManager.newBaseManager();
                LlamaModel model = LlamaModel.fromTensors(C, TestWeights.random(C, 11, 0.2, 0.1), root)) {
            List<NDArray> ws = List.of(model.weight("model.layers.0.self_attn.v_proj.weight"), model.weight("model.layers.1.mlp.gate_proj.weight"));
            ws.forEach(a -> a.setRequiresGradient(true));
            try (NDManager m = model.manager().newSubManager()) {
                int[][] ids = ids(36, 4);
                try (Autograd.Recording rec = Autograd.record()) {
                    rec.backward(Losses.mean(model.forward(model.ids(m, ids), null, LinearOp.PLAIN), model.ids(m, shifted(ids)), null));
                }
                for (NDArray a : ws) {
                    NDArray g = a.getGradient();
                    double s = 0;
                    for (float f : g.toFloatArray()) {
                        s += Math.abs(f);
                    }
                    assertTrue(s > 1e-6, "no gradient reached " + a.getName());
                    g.close();
                }
            } finally {
                ws.forEach(a -> a.setRequiresGradient(false));
            }
        }
    }
}
