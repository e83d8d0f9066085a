package dev.morastream.models.adapters;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import dev.morastream.models.llama.Autograd;
import java.nio.FloatBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * MORA_SPEC.md's regression test: for every variant and for LoRA, on square and non-square
 * shapes (including d_in not a multiple of R and R larger than a side), the adapter's forward
 * output equals {@code x dW^T} from the explicit {@code dW}.
 */
class MoraEquivalenceTest {
    /** (d_in, d_out, r): square, wide, tall, d_in not a multiple of R, R > d_out, GQA-like k_proj. */
    static final int[][] SHAPES = {{64, 64, 4}, {48, 80, 2}, {80, 48, 2}, {50, 30, 3}, {30, 70, 8}, {16, 4, 2},
        {96, 32, 1}, {7, 5, 3}, {256, 128, 8},
        // G = 1 (the reference rotation merge fails there): R == d_in, and R > d_in with a wrap longer than the input
        {12, 12, 6}, {8, 64, 8}};

    static Stream<Arguments> cases() {
        List<Arguments> out = new ArrayList<>();
        for (int[] s : SHAPES) {
            for (MoraVariant v : MoraVariant.values()) {
                out.add(Arguments.of(v.id(), s[0], s[1], s[2]));
            }
            out.add(Arguments.of("lora", s[0], s[1], s[2]));
        }
        return out.stream();
    }

    static float[] randn(Random r, int n, double std) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) (r.nextGaussian() * std);
        }
        return a;
    }

    /** A layer with random (non-zero) trainable values. */
    static AdapterLayer layer(String kind, int dIn, int dOut, int r, NDManager m, Random rnd) {
        AdapterLayer l = kind.equals("lora")
                ? new LoraLayer("t", dIn, dOut, r, 2.0 * r, 3, m)
                : new MoraLayer("t", MoraGeometry.of(MoraVariant.parse(kind), dIn, dOut, r), m);
        for (NDArray p : l.parameters().values()) {
            p.set(FloatBuffer.wrap(randn(rnd, (int) p.size(), 0.2)));
        }
        return l;
    }

    @ParameterizedTest(name = "{0} d_in={1} d_out={2} r={3}")
    @MethodSource("cases")
    void forwardEqualsExplicitDelta(String kind, int dIn, int dOut, int r) {
        Random rnd = new Random(dIn * 31L + dOut * 7L + r);
        try (NDManager m = NDManager.newBaseManager()) {
            AdapterLayer l = layer(kind, dIn, dOut, r, m, rnd);
            int n = 6;
            float[] x = randn(rnd, n * dIn, 1.0);
            float[] got = l.delta(m.create(x, new Shape(n, dIn))).toFloatArray(); // (N, d_out)
            float[] dw = l.explicitDelta(); // (d_out, d_in)
            assertEquals(n * dOut, got.length);
            double maxErr = 0;
            double maxAbs = 0;
            for (int i = 0; i < n; i++) {
                for (int o = 0; o < dOut; o++) {
                    double want = 0;
                    for (int k = 0; k < dIn; k++) {
                        want += (double) x[i * dIn + k] * dw[o * dIn + k];
                    }
                    maxErr = Math.max(maxErr, Math.abs(want - got[i * dOut + o]));
                    maxAbs = Math.max(maxAbs, Math.abs(want));
                }
            }
            assertTrue(maxAbs > 0.1, "degenerate case: the update is ~0");
            assertTrue(maxErr <= 1e-5 * Math.max(1, maxAbs), kind + ": max |forward - x dW^T| = " + maxErr + " (max " + maxAbs + ")");
        }
    }

    static Stream<Arguments> blockCases() {
        List<Arguments> out = new ArrayList<>();
        for (int[] s : SHAPES) {
            for (MoraVariant v : List.of(MoraVariant.ROTATION, MoraVariant.DECOUPLING)) {
                out.add(Arguments.of(v.id(), s[0], s[1], s[2]));
            }
        }
        out.add(Arguments.of("rotation", 1024, 256, 8)); // the 90 M model's k/v: G' = 3 of G = 11 blocks reach d_out
        out.add(Arguments.of("rotation", 1024, 2816, 8)); // gate/up: wrapped, tiled
        out.add(Arguments.of("rotation", 2816, 1024, 8)); // down: 6 of 17 blocks
        return out.stream();
    }

    /**
     * Rotation and decoupling on as many rows as R or more take the per-block matrices ({@code M
     * Rot_b}, only the blocks that reach d_out): the output equals {@code x dW^T} of the spec's
     * explicit {@code dW}, and the gradient of M equals the compress path's.
     */
    @ParameterizedTest(name = "{0} d_in={1} d_out={2} r={3}")
    @MethodSource("blockCases")
    void perBlockMatricesEqualTheSpecsDeltaAndItsGradient(String kind, int dIn, int dOut, int r) {
        Random rnd = new Random(dIn * 17L + dOut * 3L + r);
        try (NDManager m = NDManager.newBaseManager()) {
            MoraLayer l = (MoraLayer) layer(kind, dIn, dOut, r, m, rnd);
            int n = l.geometry().rank() + 3;
            assertTrue(l.blockMatrices(n) && !l.blockMatrices(l.geometry().rank() - 1));
            float[] x = randn(rnd, n * dIn, 1.0);
            float[] g = randn(rnd, n * dOut, 1.0);
            NDArray mat = l.matrix();
            mat.setRequiresGradient(true);
            float[] got;
            float[] gradBlock;
            float[] gradCompress;
            try (NDManager step = m.newSubManager()) {
                NDArray xa = step.create(x, new Shape(n, dIn));
                NDArray ga = step.create(g, new Shape(n, dOut));
                try (Autograd.Recording rec = Autograd.record()) {
                    NDArray d = l.delta(xa); // (N, d_out) through the blocks
                    got = d.toFloatArray();
                    rec.backward(d.tanh().mul(ga).sum());
                }
                gradBlock = mat.getGradient().toFloatArray();
                dev.morastream.models.train.Gradients.zero(List.of(mat));
                try (Autograd.Recording rec = Autograd.record()) {
                    NDArray d = l.decompress(ai.djl.nn.core.Linear.linear(l.compress(xa), mat).singletonOrThrow()); // the compress path
                    rec.backward(d.tanh().mul(ga).sum());
                }
                gradCompress = mat.getGradient().toFloatArray();
            } finally {
                mat.setRequiresGradient(false);
            }
            float[] dw = l.explicitDelta(); // (d_out, d_in)
            double maxErr = 0;
            double maxAbs = 0;
            for (int i = 0; i < n; i++) {
                for (int o = 0; o < dOut; o++) {
                    double want = 0;
                    for (int k = 0; k < dIn; k++) {
                        want += (double) x[i * dIn + k] * dw[o * dIn + k];
                    }
                    maxErr = Math.max(maxErr, Math.abs(want - got[i * dOut + o]));
                    maxAbs = Math.max(maxAbs, Math.abs(want));
                }
            }
            assertTrue(maxAbs > 0.1, "degenerate case: the update is ~0");
            assertTrue(maxErr <= 2e-5 * Math.max(1, maxAbs), kind + ": max |blocks - x dW^T| = " + maxErr + " (max " + maxAbs + ")");
            double gErr = 0;
            double gAbs = 0;
            for (int i = 0; i < gradBlock.length; i++) {
                gErr = Math.max(gErr, Math.abs(gradBlock[i] - gradCompress[i]));
                gAbs = Math.max(gAbs, Math.abs(gradCompress[i]));
            }
            assertTrue(gAbs > 1e-3 && gErr <= 1e-4 * Math.max(1, gAbs), kind + ": gradient of M differs by " + gErr + " (max " + gAbs + ")");
        }
    }

    @ParameterizedTest(name = "{0} d_in={1} d_out={2} r={3}")
    @MethodSource("cases")
    void gradientOfTrainableMatchesFiniteDifferences(String kind, int dIn, int dOut, int r) {
        Random rnd = new Random(dIn * 13L + dOut + r);
        try (NDManager m = NDManager.newBaseManager()) {
            AdapterLayer l = layer(kind, dIn, dOut, r, m, rnd);
            int n = 3;
            float[] x = randn(rnd, n * dIn, 1.0);
            float[] g = randn(rnd, n * dOut, 1.0);
            // loss = sum(tanh(delta(x)) * g): non-linear in the parameters
            for (NDArray p : l.parameters().values()) {
                p.setRequiresGradient(true);
            }
            float[][] analytic = new float[l.parameters().size()][];
            try (NDManager step = m.newSubManager()) {
                try (Autograd.Recording rec = Autograd.record()) {
                    NDArray loss = l.delta(step.create(x, new Shape(n, dIn))).tanh().mul(step.create(g, new Shape(n, dOut))).sum();
                    rec.backward(loss);
                }
                int i = 0;
                for (NDArray p : l.parameters().values()) {
                    NDArray gr = p.getGradient();
                    analytic[i++] = gr.toFloatArray();
                    gr.close();
                }
            }
            int pi = 0;
            for (NDArray p : l.parameters().values()) {
                float[] base = p.toFloatArray();
                for (int trial = 0; trial < 5; trial++) {
                    int idx = rnd.nextInt(base.length);
                    double eps = 1e-2;
                    double up = lossAt(l, p, base, idx, eps, x, g, n, dIn, dOut, m);
                    double down = lossAt(l, p, base, idx, -eps, x, g, n, dIn, dOut, m);
                    double fd = (up - down) / (2 * eps);
                    double an = analytic[pi][idx];
                    assertTrue(Math.abs(fd - an) <= 2e-3 + 2e-2 * Math.abs(fd),
                            kind + " param " + pi + "[" + idx + "]: analytic " + an + " vs finite difference " + fd);
                }
                p.set(FloatBuffer.wrap(base));
                pi++;
            }
        }
    }

    private static double lossAt(AdapterLayer l, NDArray p, float[] base, int idx, double eps, float[] x, float[] g,
            int n, int dIn, int dOut, NDManager m) {
        float[] v = base.clone();
        v[idx] += (float) eps;
        p.set(FloatBuffer.wrap(v));
        try (NDManager step = m.newSubManager()) {
            double[] d = toDouble(l.delta(step.create(x, new Shape(n, dIn))).toFloatArray());
            double s = 0;
            for (int i = 0; i < d.length; i++) {
                s += Math.tanh(d[i]) * g[i];
            }
            return s;
        }
    }

    private static double[] toDouble(float[] f) {
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }
}
