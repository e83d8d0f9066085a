package dev.morastream.models.bench;

import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraGeometry;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.llama.LlamaConfig;

/**
 * Model FLOPs of one training step (forward and backward, no optimizer), counted from the config
 * the way {@code LlamaModel.forward} and libtorch's autograd execute it. Only matrix products
 * count: one of {@code (m x k)(k x n)} is {@code 2mkn}; norms, RoPE, softmax, SiLU, the loss,
 * MoRA's compress/decompress sums and gathers and AdamW are elementwise and left out.
 *
 * <p>Per token, a linear module {@code W (d_out, d_in)} costs {@code 2 d_in d_out} forward;
 * backward {@code 2 d_in d_out} for the input gradient when its input depends on a trainable
 * parameter, and {@code 2 d_in d_out} more for the weight gradient when it is trained (full
 * fine-tuning). With every linear module trained this is the familiar {@code 6 N} per token for
 * full fine-tuning and {@code 4 N} plus the adapters for frozen-base methods, where {@code N} is
 * the matmul parameters (the 7 linear modules of each layer, and {@code lm_head}, which is frozen
 * and so costs {@code 4} per parameter and token in every method). The one exception is exact:
 * layer 0's {@code q/k/v} read the frozen embedding through a frozen norm, so no input gradient
 * is computed for them ({@code -2 d_in d_out} each).
 *
 * <p>Adapters, per token and module: LoRA {@code 2r(d_in + d_out)} forward; backward the
 * gradients of {@code B} and of the hidden {@code h = A x} ({@code 2 r d_out} each), of {@code A}
 * ({@code 2 r d_in}) and of {@code x} ({@code 2 r d_in}, when {@code x} needs one). MoRA {@code 2 n
 * R^2} forward, with {@code n = G = ceil(d_in / R)} blocks for rotation/decoupling and {@code n =
 * 1} for the compressed variants; backward {@code 2 n R^2} for {@code M}'s gradient and {@code 2 n
 * R^2} for the compressed input's (when {@code x} needs one).
 *
 * <p>Attention, per layer and sequence: {@code QK^T} and {@code PV} cost {@code 2 T S H D} each
 * forward, with {@code S = T}: the engine computes the full {@code (T, T)} score matrix and
 * masks it, so the causal half is counted too (PaLM's convention). Backward is twice that
 * ({@code dQ, dK, dP, dV}).
 */
public final class StepFlops {
    /**
     * FLOPs of one step.
     *
     * @param forward forward pass
     * @param backward backward pass (gradients of activations and of the trained parameters)
     */
    public record Count(double forward, double backward) {
        public double total() {
            return forward + backward;
        }
    }

    private StepFlops() {}

    /** One step on {@code rows} sequences of {@code seqLen} tokens, every position predicted. */
    public static Count of(LlamaConfig c, AdapterSpec spec, int rows, int seqLen) {
        double tokens = (double) rows * seqLen;
        int d = c.hiddenSize();
        int f = c.intermediateSize();
        int qd = c.numAttentionHeads() * c.headDim();
        int kvd = c.numKeyValueHeads() * c.headDim();
        Acc acc = new Acc(spec, tokens);
        boolean h = false; // the residual stream depends on a trainable parameter
        for (int i = 0; i < c.numHiddenLayers(); i++) {
            String p = "model.layers." + i + ".";
            boolean q = acc.linear(p + "self_attn.q_proj", d, qd, h);
            boolean k = acc.linear(p + "self_attn.k_proj", d, kvd, h);
            boolean v = acc.linear(p + "self_attn.v_proj", d, kvd, h);
            double att = 2.0 * rows * seqLen * seqLen * qd; // one of QK^T, PV: (B, H, T, D)(B, H, D, S)
            acc.forward += 2 * att;
            acc.backward += (q ? att : 0) + (k ? att : 0) + (q || k ? att : 0) + (v ? att : 0); // dQ, dK, dP, dV
            boolean o = acc.linear(p + "self_attn.o_proj", qd, d, q || k || v);
            h |= o;
            boolean g = acc.linear(p + "mlp.gate_proj", d, f, h);
            boolean u = acc.linear(p + "mlp.up_proj", d, f, h);
            h |= acc.linear(p + "mlp.down_proj", f, d, g || u);
        }
        acc.linear("lm_head", d, c.vocabSize(), h); // frozen (tied or not): never an adapter target
        return new Count(acc.forward, acc.backward);
    }

    /** Running sums; {@link #linear} returns whether the module's output needs a gradient. */
    private static final class Acc {
        private final AdapterSpec spec;
        private final double tokens;
        double forward;
        double backward;

        Acc(AdapterSpec spec, double tokens) {
            this.spec = spec;
            this.tokens = tokens;
        }

        boolean linear(String module, int dIn, int dOut, boolean inputNeedsGrad) {
            boolean target = !module.equals("lm_head") && spec.targets(module);
            double base = 2.0 * dIn * dOut * tokens;
            forward += base;
            if (inputNeedsGrad) {
                backward += base; // dX = dY W
            }
            if (!target) {
                return inputNeedsGrad;
            }
            switch (spec.method()) {
                case FULL -> backward += base; // dW = dY^T X
                case LORA -> {
                    int r = spec.r();
                    forward += 2.0 * r * (dIn + dOut) * tokens;
                    backward += (4.0 * r * dOut + 2.0 * r * dIn + (inputNeedsGrad ? 2.0 * r * dIn : 0)) * tokens;
                }
                case MORA -> {
                    MoraGeometry g = MoraGeometry.of(spec.resolvedVariant(), dIn, dOut, spec.r());
                    MoraVariant v = g.variant();
                    int blocks = v == MoraVariant.ROTATION || v == MoraVariant.DECOUPLING ? g.groups() : 1;
                    double m = 2.0 * blocks * g.rank() * (double) g.rank() * tokens; // (N, n, R)(R, R)
                    forward += m;
                    backward += m + (inputNeedsGrad ? m : 0);
                }
            }
            return true;
        }
    }
}
