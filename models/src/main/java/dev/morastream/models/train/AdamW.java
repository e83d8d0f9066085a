package dev.morastream.models.train;

import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import dev.morastream.models.llama.Tensors;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * AdamW (decoupled weight decay, Loshchilov and Hutter) over named NDArrays, with state that can be
 * exported and restored exactly for checkpoints.
 *
 * <p>Moments live in this optimizer's own manager; every temporary of an update is attached to
 * the step's manager, so nothing accumulates across steps.
 */
public final class AdamW implements AutoCloseable {
    private final double beta1;
    private final double beta2;
    private final double eps;
    private final double weightDecay;
    private final NDManager manager;
    private final Map<String, NDArray> m = new LinkedHashMap<>(); // first moments, shape of param
    private final Map<String, NDArray> v = new LinkedHashMap<>(); // second moments, shape of param
    private long t;

    public AdamW(NDManager parent, double beta1, double beta2, double eps, double weightDecay) {
        this.manager = parent.newSubManager();
        this.beta1 = beta1;
        this.beta2 = beta2;
        this.eps = eps;
        this.weightDecay = weightDecay;
    }

    /** PyTorch's defaults with the given weight decay. */
    public static AdamW withDefaults(NDManager parent, double weightDecay) {
        return new AdamW(parent, 0.9, 0.999, 1e-8, weightDecay);
    }

    /** Number of updates applied so far. */
    public long steps() {
        return t;
    }

    /** A named parameter with its gradient for one update. */
    public record Slot(String name, NDArray param, NDArray grad, boolean decay) {}

    /**
     * Applies one update in place.
     *
     * @param slots parameters with gradients (gradients owned by {@code step})
     * @param lr learning rate of this update
     * @param step the manager of this training step, receiving every temporary
     */
    public void update(List<Slot> slots, double lr, NDManager step) {
        t++;
        double bc1 = 1 - Math.pow(beta1, t);
        double bc2 = 1 - Math.pow(beta2, t);
        for (Slot s : slots) {
            NDArray g = s.grad(); // shape of param, in step
            NDArray mi = m.computeIfAbsent(s.name(), k -> manager.zeros(s.param().getShape()));
            NDArray vi = v.computeIfAbsent(s.name(), k -> manager.zeros(s.param().getShape()));
            mi.muli((float) beta1).addi(g.mul((float) (1 - beta1))); // scalar-ok: no graph is recorded here
            vi.muli((float) beta2).addi(g.square().mul((float) (1 - beta2))); // scalar-ok: no graph is recorded here
            NDArray denom = step(vi.sqrt(), step).divi((float) Math.sqrt(bc2)).addi((float) eps);
            NDArray upd = step(mi.div(denom), step).muli((float) (lr / bc1));
            if (weightDecay > 0 && s.decay()) {
                s.param().muli((float) (1 - lr * weightDecay));
            }
            s.param().subi(upd);
        }
    }

    private static NDArray step(NDArray a, NDManager step) {
        a.attach(step);
        return a;
    }

    /** Forgets the moments of the named parameters (ReMoRA restarts) — they restart at zero. */
    public void reset(java.util.Collection<String> names) {
        for (String n : names) {
            NDArray a = m.remove(n);
            if (a != null) {
                a.close();
            }
            NDArray b = v.remove(n);
            if (b != null) {
                b.close();
            }
        }
    }

    /** State for checkpoints: step count and the moments by parameter name. */
    public record State(long step, Map<String, float[]> m, Map<String, float[]> v, Map<String, long[]> shapes) {}

    public State state() {
        Map<String, float[]> ms = new LinkedHashMap<>();
        Map<String, float[]> vs = new LinkedHashMap<>();
        Map<String, long[]> shapes = new LinkedHashMap<>();
        m.forEach((k, a) -> {
            ms.put(k, a.toFloatArray());
            shapes.put(k, a.getShape().getShape());
        });
        v.forEach((k, a) -> vs.put(k, a.toFloatArray()));
        return new State(t, ms, vs, shapes);
    }

    public void restore(State s) {
        m.values().forEach(NDArray::close);
        v.values().forEach(NDArray::close);
        m.clear();
        v.clear();
        t = s.step();
        s.m().forEach((k, d) -> m.put(k, Tensors.owned(manager, d, new ai.djl.ndarray.types.Shape(s.shapes().get(k)))));
        s.v().forEach((k, d) -> v.put(k, Tensors.owned(manager, d, new ai.djl.ndarray.types.Shape(s.shapes().get(k)))));
    }

    @Override
    public void close() {
        manager.close();
    }
}
