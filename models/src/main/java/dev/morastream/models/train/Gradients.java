package dev.morastream.models.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.jni.JniUtils;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** Reading, clipping and zeroing the gradients of trainable arrays. */
public final class Gradients {
    private Gradients() {}

    /** Gradient wrappers of each trainable array, attached to {@code step} (freed with it). */
    public static List<NDArray> collect(Map<String, NDArray> trainable, NDManager step) {
        List<NDArray> out = new ArrayList<>(trainable.size());
        for (NDArray p : trainable.values()) {
            NDArray g = p.getGradient(); // shape of p
            g.attach(step);
            out.add(g);
        }
        return out;
    }

    /** Global L2 norm of the gradients. */
    public static double globalNorm(List<NDArray> grads) {
        double sq = 0;
        for (NDArray g : grads) {
            sq += g.square().sum().getFloat();
        }
        return Math.sqrt(sq);
    }

    /** Scales gradients in place so that their global norm is at most {@code maxNorm}; returns the norm before. */
    public static double clip(List<NDArray> grads, double maxNorm) {
        double norm = globalNorm(grads);
        if (maxNorm > 0 && norm > maxNorm && Double.isFinite(norm)) {
            float s = (float) (maxNorm / (norm + 1e-6));
            for (NDArray g : grads) {
                g.muli(s);
            }
        }
        return norm;
    }

    /** Sets the accumulated gradient of each trainable array to zero (gradients accumulate otherwise). */
    public static void zero(Iterable<NDArray> trainable) {
        for (NDArray p : trainable) {
            if (p instanceof PtNDArray pt) {
                JniUtils.zeroGrad(pt);
            } else {
                NDArray g = p.getGradient();
                g.subi(g);
                g.close();
            }
        }
    }
}
