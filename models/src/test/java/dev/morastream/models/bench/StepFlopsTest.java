package dev.morastream.models.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.llama.LlamaConfig;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * {@link StepFlops} against sums done by hand on {@code LlamaConfig.micro(64)}: d 32, ffn 48, 2
 * layers, 4 query / 2 KV heads of 8, vocab 64 (tied); batch 2 x 8 = 16 tokens.
 *
 * <p>Per layer (d_in x d_out): q 32x32 = 1024, k 32x16 = 512, v 512, o 1024, gate/up/down 1536
 * each: 7680; both layers N = 15360; lm_head 32x64 = 2048; layer 0's q+k+v 2048. One attention
 * product per layer {@code 2 B T T (H D)} = 2*2*8*8*32 = 8192: forward 2 x 8192 per layer, 32768 in
 * all, backward twice that.
 */
class StepFlopsTest {
    static final LlamaConfig C = LlamaConfig.micro(64);
    static final double TOK = 16;
    static final double BASE_FWD = 2 * (15360 + 2048) * TOK; // 557056
    static final double BASE_DX = 2 * (15360 + 2048 - 2048) * TOK; // no dX for layer 0's q/k/v: 491520
    static final double ATT_FWD = 2 * 2 * 8192; // 32768
    static final double ATT_BWD = 2 * ATT_FWD; // 65536

    @Test
    void fullIsSixNPerTokenPlusFrozenHeadAndAttention() {
        StepFlops.Count c = StepFlops.of(C, AdapterSpec.full(), 2, 8);
        assertEquals(BASE_FWD + ATT_FWD, c.forward());
        assertEquals(2 * 15360 * TOK + BASE_DX + ATT_BWD, c.backward());
        // 6 N tokens + 4 x lm_head - 2 x layer-0 qkv + 3 x attention
        assertEquals(6 * 15360 * TOK + 4 * 2048 * TOK - 2 * 2048 * TOK + 3 * ATT_FWD, c.total());
        assertEquals(1_638_400, c.total());
    }

    @Test
    void loraAddsThreeTimesItsForward() {
        // r = 4, per token 2r(d_in + d_out): q 512, k 384, v 384, o 512, gate/up/down 640 each = 3712 per layer
        double adapterFwd = 2 * 3712 * TOK; // 118784
        double adapterBwd = 2 * adapterFwd - 3 * (2 * 4 * 32) * TOK; // no dX of layer 0's q/k/v A: 225280
        StepFlops.Count c = StepFlops.of(C, AdapterSpec.lora(4, 8), 2, 8);
        assertEquals(BASE_FWD + adapterFwd + ATT_FWD, c.forward());
        assertEquals(BASE_DX + adapterBwd + ATT_BWD, c.backward());
        assertEquals(708_608 + 782_336, c.total());
    }

    @Test
    void moraRotationCountsEveryBlockThroughM() {
        // R = floor(sqrt((d_in + d_out) r) + 0.5), G = ceil(d_in / R), forward 2 G R^2 per token:
        // q R16 G2 1024, k R14 G3 1176, v 1176, o 1024, gate R18 G2 1296, up 1296, down R18 G3 1944 = 8936
        double adapterFwd = 2 * 8936 * TOK; // 285952
        double adapterBwd = 2 * adapterFwd - (1024 + 1176 + 1176) * TOK; // dM everywhere, dX not at layer 0's q/k/v
        StepFlops.Count c = StepFlops.of(C, AdapterSpec.mora(4, MoraVariant.ROTATION), 2, 8);
        assertEquals(BASE_FWD + adapterFwd + ATT_FWD, c.forward());
        assertEquals(BASE_DX + adapterBwd + ATT_BWD, c.backward());
    }

    @Test
    void moraSharingCompressesToOneBlock() {
        // R: q 16, k 14, v 14, o 16, gate/up/down 18; 2 R^2: 512 + 392 + 392 + 512 + 3 x 648 = 3752
        double adapterFwd = 2 * 3752 * TOK;
        double adapterBwd = 2 * adapterFwd - (512 + 392 + 392) * TOK;
        StepFlops.Count c = StepFlops.of(C, AdapterSpec.mora(4, MoraVariant.SHARING), 2, 8);
        assertEquals(BASE_FWD + adapterFwd + ATT_FWD, c.forward());
        assertEquals(BASE_DX + adapterBwd + ATT_BWD, c.backward());
    }

    @Test
    void nothingBeforeTheFirstTrainedModuleIsDifferentiated() {
        // full fine-tuning of down_proj only: layer 0 has no backward but down's dW; layer 1 all dX,
        // its attention's backward, down's dW; lm_head's dX
        AdapterSpec downOnly = new AdapterSpec(AdapterSpec.Method.FULL, null, 0, 0, 0, List.of("down_proj"),
                AdapterSpec.DEFAULT_ROTATION_THRESHOLD, 0);
        StepFlops.Count c = StepFlops.of(C, downOnly, 2, 8);
        assertEquals(BASE_FWD + ATT_FWD, c.forward());
        double bwd = 2 * (2 * 1536 * TOK) + 2 * 7680 * TOK + 2 * 2048 * TOK + 4 * 8192;
        assertEquals(bwd, c.backward());
        assertEquals(442_368, c.backward());
    }
}
