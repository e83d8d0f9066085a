package dev.morastream.models.adapters;

import java.util.List;
import java.util.Locale;

/**
 * What to train on a frozen base: MoRA, LoRA, or full fine-tuning of the target modules.
 *
 * @param method MORA, LORA or FULL
 * @param variant MoRA variant, {@code null} for the authors' recommendation (rotation below
 *     {@code rotationThreshold}, sharing at or above it)
 * @param r rank: LoRA's rank, and the LoRA budget MoRA's square matrix matches
 * @param alpha LoRA scaling numerator ({@code alpha / r}); MoRA ignores it
 * @param dropout applied to the layer input before the adapter (training only)
 * @param targetModules HF module names, e.g. {@code q_proj}, {@code down_proj}
 * @param rotationThreshold smallest r for which sharing is the default instead of rotation
 * @param seed initialisation (LoRA's A) and dropout
 */
public record AdapterSpec(
        Method method,
        MoraVariant variant,
        int r,
        double alpha,
        double dropout,
        List<String> targetModules,
        int rotationThreshold,
        long seed) {

    /** Default threshold between rotation (small r, e.g. 8) and sharing (large r, e.g. 256). */
    public static final int DEFAULT_ROTATION_THRESHOLD = 128;

    /** Every linear module of a Llama layer. */
    public static final List<String> ALL_LINEAR =
            List.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj");

    /** Training method. */
    public enum Method {
        MORA,
        LORA,
        FULL;

        public static Method parse(String s) {
            return valueOf(s.trim().toUpperCase(Locale.ROOT));
        }

        public String id() {
            return name().toLowerCase(Locale.ROOT);
        }
    }

    public AdapterSpec {
        if (method == null) {
            throw new IllegalArgumentException("method is required");
        }
        if (method != Method.FULL && r <= 0) {
            throw new IllegalArgumentException("rank r must be positive, got " + r);
        }
        if (dropout < 0 || dropout >= 1) {
            throw new IllegalArgumentException("dropout must be in [0, 1), got " + dropout);
        }
        targetModules = List.copyOf(targetModules == null || targetModules.isEmpty() ? ALL_LINEAR : targetModules);
    }

    public static AdapterSpec mora(int r, MoraVariant variant) {
        return new AdapterSpec(Method.MORA, variant, r, r, 0.0, ALL_LINEAR, DEFAULT_ROTATION_THRESHOLD, 0);
    }

    public static AdapterSpec lora(int r, double alpha) {
        return new AdapterSpec(Method.LORA, null, r, alpha, 0.0, ALL_LINEAR, DEFAULT_ROTATION_THRESHOLD, 0);
    }

    public static AdapterSpec full() {
        return new AdapterSpec(Method.FULL, null, 0, 0, 0.0, ALL_LINEAR, DEFAULT_ROTATION_THRESHOLD, 0);
    }

    public AdapterSpec withDropout(double p) {
        return new AdapterSpec(method, variant, r, alpha, p, targetModules, rotationThreshold, seed);
    }

    public AdapterSpec withSeed(long s) {
        return new AdapterSpec(method, variant, r, alpha, dropout, targetModules, rotationThreshold, s);
    }

    public AdapterSpec withVariant(MoraVariant v) {
        return new AdapterSpec(method, v, r, alpha, dropout, targetModules, rotationThreshold, seed);
    }

    /** The MoRA variant in effect. */
    public MoraVariant resolvedVariant() {
        if (variant != null) {
            return variant;
        }
        return r < rotationThreshold ? MoraVariant.ROTATION : MoraVariant.SHARING;
    }

    /** Whether a module path ({@code model.layers.3.mlp.down_proj}) is targeted. */
    public boolean targets(String module) {
        String leaf = module.substring(module.lastIndexOf('.') + 1);
        return targetModules.contains(leaf) || targetModules.contains(module);
    }

    /** A short label: {@code mora-rotation-r8}, {@code lora-r8}, {@code full}. */
    public String label() {
        return switch (method) {
            case MORA -> "mora-" + resolvedVariant().id() + "-r" + r;
            case LORA -> "lora-r" + r;
            case FULL -> "full";
        };
    }
}
