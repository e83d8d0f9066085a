package dev.morastream.models.llama;

import dev.morastream.models.checkpoint.Tensor;
import java.util.Map;

/**
 * A plain-Java reference of the Llama forward pass, written from the HF modelling code's math with
 * loops only, to check the DJL implementation against.
 */
final class NaiveLlama {
    private final LlamaConfig c;
    private final Map<String, Tensor> w;

    NaiveLlama(LlamaConfig c, Map<String, Tensor> w) {
        this.c = c;
        this.w = w;
    }

    /** Logits {@code [T][V]} for one sequence. */
    float[][] forward(int[] ids) {
        int t = ids.length;
        int d = c.hiddenSize();
        float[][] h = new float[t][];
        float[] emb = w.get("model.embed_tokens.weight").data();
        for (int i = 0; i < t; i++) {
            h[i] = new float[d];
            System.arraycopy(emb, ids[i] * d, h[i], 0, d);
        }
        int nh = c.numAttentionHeads();
        int nkv = c.numKeyValueHeads();
        int hd = c.headDim();
        float[] inv = c.inverseFrequencies();
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            String p = "model.layers." + l + ".";
            float[][] q = new float[t][];
            float[][] k = new float[t][];
            float[][] v = new float[t][];
            for (int i = 0; i < t; i++) {
                float[] x = rms(h[i], w.get(p + "input_layernorm.weight").data());
                q[i] = matvec(w.get(p + "self_attn.q_proj.weight"), x);
                k[i] = matvec(w.get(p + "self_attn.k_proj.weight"), x);
                v[i] = matvec(w.get(p + "self_attn.v_proj.weight"), x);
                rope(q[i], nh, hd, i, inv);
                rope(k[i], nkv, hd, i, inv);
            }
            for (int i = 0; i < t; i++) {
                float[] o = new float[nh * hd];
                for (int head = 0; head < nh; head++) {
                    int kvh = head / (nh / nkv);
                    double[] s = new double[i + 1];
                    double max = Double.NEGATIVE_INFINITY;
                    for (int j = 0; j <= i; j++) {
                        double dot = 0;
                        for (int e = 0; e < hd; e++) {
                            dot += q[i][head * hd + e] * k[j][kvh * hd + e];
                        }
                        s[j] = dot / Math.sqrt(hd);
                        max = Math.max(max, s[j]);
                    }
                    double z = 0;
                    for (int j = 0; j <= i; j++) {
                        s[j] = Math.exp(s[j] - max);
                        z += s[j];
                    }
                    for (int e = 0; e < hd; e++) {
                        double acc = 0;
                        for (int j = 0; j <= i; j++) {
                            acc += s[j] / z * v[j][kvh * hd + e];
                        }
                        o[head * hd + e] = (float) acc;
                    }
                }
                float[] ao = matvec(w.get(p + "self_attn.o_proj.weight"), o);
                for (int e = 0; e < d; e++) {
                    h[i][e] += ao[e];
                }
                float[] x = rms(h[i], w.get(p + "post_attention_layernorm.weight").data());
                float[] g = matvec(w.get(p + "mlp.gate_proj.weight"), x);
                float[] u = matvec(w.get(p + "mlp.up_proj.weight"), x);
                for (int e = 0; e < g.length; e++) {
                    g[e] = (float) (g[e] / (1 + Math.exp(-g[e])) * u[e]);
                }
                float[] dn = matvec(w.get(p + "mlp.down_proj.weight"), g);
                for (int e = 0; e < d; e++) {
                    h[i][e] += dn[e];
                }
            }
        }
        Tensor head = c.tieWordEmbeddings() ? w.get("model.embed_tokens.weight") : w.get("lm_head.weight");
        float[][] logits = new float[t][];
        for (int i = 0; i < t; i++) {
            logits[i] = matvec(head, rms(h[i], w.get("model.norm.weight").data()));
        }
        return logits;
    }

    private float[] rms(float[] x, float[] g) {
        double ss = 0;
        for (float f : x) {
            ss += (double) f * f;
        }
        double r = 1.0 / Math.sqrt(ss / x.length + c.rmsNormEps());
        float[] out = new float[x.length];
        for (int i = 0; i < x.length; i++) {
            out[i] = (float) (x[i] * r * g[i]);
        }
        return out;
    }

    private static float[] matvec(Tensor m, float[] x) {
        int rows = (int) m.shape()[0];
        int cols = (int) m.shape()[1];
        float[] out = new float[rows];
        for (int r = 0; r < rows; r++) {
            double acc = 0;
            for (int j = 0; j < cols; j++) {
                acc += (double) m.data()[r * cols + j] * x[j];
            }
            out[r] = (float) acc;
        }
        return out;
    }

    /** Rotate-half RoPE in place on each head of {@code v}. */
    private static void rope(float[] v, int heads, int hd, int pos, float[] inv) {
        int half = hd / 2;
        for (int h = 0; h < heads; h++) {
            for (int k = 0; k < half; k++) {
                double a = (double) pos * inv[k];
                double cos = Math.cos(a);
                double sin = Math.sin(a);
                int i1 = h * hd + k;
                int i2 = i1 + half;
                double x1 = v[i1];
                double x2 = v[i2];
                v[i1] = (float) (x1 * cos - x2 * sin);
                v[i2] = (float) (x2 * cos + x1 * sin);
            }
        }
    }
}
