package dev.morastream.models.train;

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
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Trains the adapters (or, for FULL, the target weights) of a frozen base one batch at a time, as
 * the streaming trainer actors drive it: AdamW, gradient clipping, warmup + cosine/linear/constant
 * schedule, gradient accumulation, completion-only loss, ReMoRA/ReLoRA restarts. Every call runs
 * in its own NDManager. Not thread-safe: one caller at a time; but any number of trainers, each on
 * its own thread, may step at once on one shared model (LoRA/MoRA without restarts: see {@link
 * #writesBase}).
 */
public final class IncrementalTrainer implements AutoCloseable {
    /** ReMoRA's cycle of grouping types (reference default 1 -> 2 -> 3 -> 4). */
    static final List<MoraVariant> REMORA_CYCLE =
            List.of(MoraVariant.SHARING, MoraVariant.CONTIGUOUS, MoraVariant.TYPE3, MoraVariant.TYPE4);

    private final LlamaModel model;
    private final LlamaModel reference; // the frozen base for the KL term when this trainer writes model's weights
    private final AdapterSpec baseSpec;
    private final TrainerConfig cfg;
    private final AdamW opt;
    private AdapterSet adapters;
    private long step; // optimizer steps
    private long microStep; // micro-batches
    private long scheduleStart; // optimizer step at which the current schedule (re)started
    private int restarts; // ReMoRA/ReLoRA restarts done
    private double accumulatedLoss;

    public IncrementalTrainer(LlamaModel model, AdapterSpec spec, TrainerConfig cfg) {
        this(model, spec, cfg, null);
    }

    /**
     * @param reference the frozen base model for the KL-to-base term ({@link TrainerConfig#klWeight}),
     *     needed only by a trainer that writes {@code model}'s weights (full fine-tuning, ReMoRA,
     *     ReLoRA); {@code null}: the base is {@code model} without the adapters
     */
    public IncrementalTrainer(LlamaModel model, AdapterSpec spec, TrainerConfig cfg, LlamaModel reference) {
        this.model = model;
        this.reference = reference;
        this.baseSpec = spec;
        this.cfg = cfg;
        if (cfg.klWeight() > 0 && reference == null && (spec.method() == AdapterSpec.Method.FULL || cfg.remoraEvery() > 0)) {
            throw new IllegalArgumentException("kl-weight > 0 needs the frozen base: full fine-tuning and ReMoRA/ReLoRA write the"
                    + " model's weights, so the model without adapters is no longer the base (give a reference model, or kl-weight = 0)");
        }
        if (cfg.remoraEvery() > 0 && spec.method() == AdapterSpec.Method.MORA
                && (spec.resolvedVariant() == MoraVariant.ROTATION || spec.resolvedVariant() == MoraVariant.DECOUPLING)) {
            throw new IllegalArgumentException("ReMoRA switches grouping types 1-4; rotation (type 6) is not used with it");
        }
        this.adapters = newAdapters(specForRestart(0));
        this.opt = AdamW.withDefaults(model.manager(), cfg.weightDecay());
        markTrainable();
    }

    /**
     * Whether this trainer writes the base weights (full fine-tuning trains them, ReMoRA/ReLoRA
     * merges into them): such a trainer needs a model of its own, not one shared with other
     * trainers or with serving.
     */
    public boolean writesBase() {
        return baseSpec.method() == AdapterSpec.Method.FULL || cfg.remoraEvery() > 0;
    }

    private AdapterSet newAdapters(AdapterSpec spec) {
        return writesBase() ? AdapterSet.createOwning(model, spec) : AdapterSet.create(model, spec);
    }

    /** The spec in effect after {@code n} restarts: ReMoRA switches type, ReLoRA re-seeds A. */
    AdapterSpec specForRestart(int n) {
        if (cfg.remoraEvery() <= 0 || n == 0) {
            return baseSpec;
        }
        return switch (baseSpec.method()) {
            case MORA -> {
                MoraVariant first = baseSpec.resolvedVariant();
                int at = Math.max(0, REMORA_CYCLE.indexOf(first));
                yield baseSpec.withVariant(REMORA_CYCLE.get((at + n) % REMORA_CYCLE.size()));
            }
            case LORA -> baseSpec.withSeed(baseSpec.seed() + 7919L * n);
            case FULL -> baseSpec;
        };
    }

    private void markTrainable() {
        adapters.trainable().values().forEach(a -> a.setRequiresGradient(true));
    }

    public AdapterSet adapters() {
        return adapters;
    }

    /**
     * How the model applies this trainer's current adapters, for evaluations between steps; it
     * follows the adapters across ReMoRA restarts (which replace the set).
     */
    public LinearOp op() {
        return new LinearOp() {
            @Override
            public NDArray apply(String module, NDArray x, NDArray w, NDArray b) {
                return adapters.op().apply(module, x, w, b);
            }

            @Override
            public NDArray delta(String module, NDArray x, NDArray w) {
                return adapters.op().delta(module, x, w);
            }

            @Override
            public boolean sharesBase(String module) {
                return adapters.op().sharesBase(module);
            }
        };
    }

    public LlamaModel model() {
        return model;
    }

    public TrainerConfig config() {
        return cfg;
    }

    public AdapterSpec spec() {
        return baseSpec;
    }

    public long step() {
        return step;
    }

    public long microStep() {
        return microStep;
    }

    public int restarts() {
        return restarts;
    }

    /** Learning rate of the next optimizer step. */
    public double currentLr() {
        long local = step - scheduleStart;
        if (restarts == 0) {
            return new LrSchedule(cfg.schedule(), cfg.lr(), cfg.warmupSteps(), cfg.totalSteps(), cfg.minLrRatio()).lr(local);
        }
        int total = Math.max(cfg.remoraEvery(), cfg.remoraWarmup() + 1);
        return new LrSchedule(cfg.schedule(), cfg.lr(), cfg.remoraWarmup(), total, cfg.minLrRatio()).lr(local);
    }

    /** One micro-batch: forward, backward, and (at the end of an accumulation) the update. */
    public StepResult step(TrainBatch batch) {
        long t0 = System.nanoTime();
        Map<String, NDArray> trainable = adapters.trainable();
        double lossBefore;
        boolean updated = false;
        boolean skipped = false;
        double lr = 0;
        double gradNorm = Double.NaN;
        double lossAfter = Double.NaN;
        double klToBase;
        try (NDManager sm = model.manager().newSubManager()) {
            Inputs in = inputs(batch, sm);
            Objective o = objective(batch, in, sm, true);
            lossBefore = o.crossEntropy();
            klToBase = o.klToBase();
            microStep++;
            accumulatedLoss += lossBefore;
            if (microStep % cfg.gradAccum() == 0) {
                updated = true;
                lr = currentLr();
                List<NDArray> grads = Gradients.collect(trainable, sm);
                gradNorm = Gradients.clip(grads, cfg.clipNorm());
                boolean finite = Double.isFinite(accumulatedLoss) && Double.isFinite(gradNorm);
                if (finite) {
                    List<AdamW.Slot> slots = new ArrayList<>();
                    int i = 0;
                    for (Map.Entry<String, NDArray> e : trainable.entrySet()) {
                        slots.add(new AdamW.Slot(e.getKey(), e.getValue(), grads.get(i++), e.getValue().getShape().dimension() == 2));
                    }
                    opt.update(slots, lr, sm);
                    step++;
                } else {
                    skipped = true;
                }
                Gradients.zero(trainable.values());
                accumulatedLoss = 0;
                if (finite && cfg.measureAfter()) {
                    lossAfter = Losses.mean(model.forward(in.x, null, adapters.op()), in.y, in.mask).getFloat();
                }
                if (finite && cfg.remoraEvery() > 0 && step % cfg.remoraEvery() == 0) {
                    restart();
                }
            }
        }
        return new StepResult(step, microStep, lossBefore, lossAfter, lr, gradNorm, updated, skipped,
                batch.predictions(), (System.nanoTime() - t0) / 1e6, klToBase);
    }

    /** The two parts of the training objective {@code CE + klWeight x KL} on a batch. */
    record Objective(double crossEntropy, double klToBase) {}

    /**
     * Forward (and, with {@code backward}, backward into the trainables' gradients, scaled by
     * {@code 1 / gradAccum}) of the training objective: cross-entropy on the batch's counted
     * targets plus, when {@code klWeight > 0} and some position counts, {@code klWeight x} the mean
     * KL from the frozen base's next-token distribution (one extra forward without the adapters,
     * recorded nowhere) over the positions of {@link #klMask}.
     */
    private Objective objective(TrainBatch batch, Inputs in, NDManager sm, boolean backward) {
        NDArray klMask = cfg.klWeight() > 0 ? klMask(batch, sm) : null; // (B, T) or null
        NDArray baseLogits = null;
        if (klMask != null) {
            Autograd.off(); // the base's logits are a constant of the loss
            baseLogits = (reference != null ? reference : model).forward(in.x, null, LinearOp.PLAIN); // (B, T, V)
        }
        adapters.setTraining(backward);
        adapters.seedDropout(microStep);
        // per-thread recording (not DJL's JVM-wide GradientCollector): trainers step concurrently
        try (Autograd.Recording rec = backward ? Autograd.record() : null) {
            NDArray logits = model.forward(in.x, null, adapters.op()); // (B, T, V)
            NDArray loss = Losses.mean(logits, in.y, in.mask); // ()
            double ce = loss.getFloat();
            double kl = Double.NaN;
            if (baseLogits != null) {
                NDArray k = Losses.klMean(logits, baseLogits, klMask); // ()
                kl = k.getFloat();
                loss = loss.add(Scalars.mul(k, cfg.klWeight()));
            }
            if (rec != null) {
                rec.backward(cfg.gradAccum() == 1 ? loss : Scalars.div(loss, cfg.gradAccum()));
            }
            return new Objective(ce, kl);
        } finally {
            adapters.setTraining(false);
        }
    }

    /** The objective's value on a batch, without dropout or gradients (for gradient checks). */
    double objectiveValue(TrainBatch batch) {
        Autograd.off();
        try (NDManager sm = model.manager().newSubManager()) {
            Objective o = objective(batch, inputs(batch, sm), sm, false);
            return o.crossEntropy() + (Double.isNaN(o.klToBase()) ? 0 : cfg.klWeight() * o.klToBase());
        }
    }

    /**
     * The objective's gradient with respect to each trainable array on a batch, as flat copies;
     * leaves the trainables' gradients zeroed and changes nothing else (for gradient checks).
     */
    Map<String, float[]> objectiveGradients(TrainBatch batch) {
        Map<String, NDArray> trainable = adapters.trainable();
        Map<String, float[]> out = new java.util.LinkedHashMap<>();
        try (NDManager sm = model.manager().newSubManager()) {
            objective(batch, inputs(batch, sm), sm, true);
            for (Map.Entry<String, NDArray> e : trainable.entrySet()) {
                out.put(e.getKey(), e.getValue().getGradient().toFloatArray());
            }
            Gradients.zero(trainable.values());
        }
        return out;
    }

    /** Mean loss of a batch without training (no dropout, no gradients). */
    public double evaluate(TrainBatch batch) {
        Autograd.off();
        try (NDManager sm = model.manager().newSubManager()) {
            Inputs in = inputs(batch, sm);
            return Losses.mean(model.forward(in.x, null, adapters.op()), in.y, in.mask).getFloat();
        }
    }

    /**
     * ReMoRA / ReLoRA: merge the update into the base weights, switch the grouping type (MoRA) or
     * re-draw A (LoRA), start again from zero, forget the adapters' optimizer state, and restart
     * the schedule with a short warmup.
     */
    public void restart() {
        Map<String, NDArray> old = adapters.trainable();
        adapters.absorb();
        opt.reset(old.keySet());
        if (baseSpec.method() != AdapterSpec.Method.FULL) {
            old.values().forEach(a -> a.setRequiresGradient(false));
            adapters.close();
            restarts++;
            adapters = newAdapters(specForRestart(restarts));
            markTrainable();
        } else {
            restarts++;
        }
        scheduleStart = step;
    }

    /** Restores counters (checkpoint resume). */
    void restoreCounters(long step, long microStep, long scheduleStart, int restarts) {
        this.step = step;
        this.microStep = microStep;
        this.scheduleStart = scheduleStart;
        this.restarts = restarts;
    }

    /** Replaces the adapters after the restart count is known (checkpoint resume). */
    void replaceAdapters(AdapterSet set) {
        adapters.trainable().values().forEach(a -> a.setRequiresGradient(false));
        adapters.close();
        adapters = set;
        markTrainable();
    }

    long scheduleStart() {
        return scheduleStart;
    }

    AdamW optimizer() {
        return opt;
    }

    private record Inputs(NDArray x, NDArray y, NDArray mask) {}

    private Inputs inputs(TrainBatch b, NDManager sm) {
        int rows = b.tokens().length;
        int t = b.tokens()[0].length - 1;
        int[][] x = new int[rows][];
        int[][] y = new int[rows][];
        float[] mask = null;
        boolean useCompletion = cfg.completionOnly() && b.completionMask() != null;
        if (b.targetMask() != null || useCompletion) {
            mask = new float[rows * t];
        }
        for (int i = 0; i < rows; i++) {
            x[i] = java.util.Arrays.copyOf(b.tokens()[i], t);
            y[i] = java.util.Arrays.copyOfRange(b.tokens()[i], 1, t + 1);
            if (mask != null) {
                for (int j = 0; j < t; j++) {
                    float m = b.targetMask() == null ? 1f : b.targetMask()[i][j];
                    if (useCompletion) {
                        m *= b.completionMask()[i][j];
                    }
                    mask[i * t + j] = m;
                }
            }
        }
        NDArray maskArr = mask == null ? null
                : sm.create(mask, new Shape(rows, t)).toDevice(model.device(), false); // (B, T)
        return new Inputs(model.ids(sm, x), model.ids(sm, y), maskArr);
    }

    /**
     * Where the KL-to-base term counts: the target positions of the base rows and, with {@link
     * TrainerConfig#klOnPrompts}, the prompt positions (completion mask 0) of the other rows;
     * {@code null} when no position counts.
     */
    private NDArray klMask(TrainBatch b, NDManager sm) {
        int rows = b.tokens().length;
        int t = b.tokens()[0].length - 1;
        float[] mask = new float[rows * t];
        boolean any = false;
        for (int i = 0; i < rows; i++) {
            boolean base = b.baseRow(i);
            if (!base && !(cfg.klOnPrompts() && b.completionMask() != null)) {
                continue;
            }
            for (int j = 0; j < t; j++) {
                float m = b.targetMask() == null ? 1f : b.targetMask()[i][j];
                if (!base) {
                    m *= 1f - b.completionMask()[i][j];
                }
                mask[i * t + j] = m;
                any |= m > 0;
            }
        }
        return any ? sm.create(mask, new Shape(rows, t)).toDevice(model.device(), false) : null; // (B, T)
    }

    /** Detaches the adapters (unmerged) from the model and frees the optimizer. */
    @Override
    public void close() {
        adapters.trainable().values().forEach(a -> a.setRequiresGradient(false));
        adapters.close();
        opt.close();
    }
}
