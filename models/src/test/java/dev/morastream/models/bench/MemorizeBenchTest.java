package dev.morastream.models.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import dev.morastream.models.ShippedModel;
import dev.morastream.models.adapters.AdapterSpec;
import dev.morastream.models.adapters.MoraVariant;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.models.train.TrainerConfig;
import java.util.List;
import org.junit.jupiter.api.Test;

class MemorizeBenchTest {
    @Test
    void shortMemorisationRunCutsTheLossByAFactorOfFour() {
        try (NDManager root = NDManager.newBaseManager(); LlamaModel model = LlamaModel.load(ShippedModel.DIR, root);
                TextTokenizer tok = TextTokenizer.forModel(ShippedModel.DIR, model.config())) {
            List<MemorizeBench.Point> pts = MemorizeBench.run(model, tok, AdapterSpec.mora(8, MoraVariant.ROTATION),
                    TrainerConfig.constant(1e-2), 4, 40, 20, 7, p -> System.out.println("memorize " + p));
            assertEquals(3, pts.size());
            double first = pts.get(0).loss();
            double last = pts.get(pts.size() - 1).loss();
            // UUIDs are new to the base model: ~8 nats/token at first
            assertTrue(last < first / 4, "loss fell only from " + first + " to " + last);
            assertTrue(pts.get(2).charAcc() >= pts.get(0).charAcc());
        }
    }

    @Test
    void pairsAreDeterministicAndBatchesMaskPadding() {
        assertEquals(MemorizeBench.pairs(3, 1), MemorizeBench.pairs(3, 1));
        assertTrue(!MemorizeBench.pairs(3, 1).equals(MemorizeBench.pairs(3, 2)));
        var b = MemorizeBench.batch(MemorizeBench.pairs(2, 1), new dev.morastream.models.tokenizer.ByteTokenizer());
        assertEquals(2 + 36 + 1 + 36, b.tokens()[0].length); // BOS key:value EOS
    }
}
