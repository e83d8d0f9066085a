package dev.morastream.models.train;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import dev.morastream.models.checkpoint.DType;
import dev.morastream.models.generate.TestModels;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.ByteTokenizer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The pseudo-rehearsal cache: keyed by the base's identity, reused, regenerated, repaired. */
class PseudoRehearsalTest {
    static final List<String> PROMPTS = List.of("Q: What is the capital of Lolunhalia?\nA:", "The capital of Kelbelfaia is",
            "63 - 43  =");

    @Test
    void reusedWhileTheBaseIsTheSameAndRegeneratedWhenItChanges(@TempDir Path dir) throws IOException {
        ByteTokenizer tok = new ByteTokenizer();
        Path cache = dir.resolve("cache");
        try (NDManager root = NDManager.newBaseManager(); LlamaModel a = TestModels.peaked(1, root);
                LlamaModel b = TestModels.peaked(2, root)) {
            a.save(dir.resolve("a"), DType.F32, Long.MAX_VALUE, Map.of());
            b.save(dir.resolve("b"), DType.F32, Long.MAX_VALUE, Map.of());
            String idA = PseudoRehearsal.identity(dir.resolve("a"));
            String idB = PseudoRehearsal.identity(dir.resolve("b"));
            assertNotEquals(idA, idB);
            assertEquals(idA, PseudoRehearsal.identity(dir.resolve("a")), "identity is stable");

            PseudoRehearsal.Loaded first = PseudoRehearsal.loadOrGenerate(cache, idA, PROMPTS, 8, a, tok, s -> { });
            assertTrue(first.generated());
            assertEquals(PROMPTS.size(), first.pairs().size());
            for (int i = 0; i < PROMPTS.size(); i++) {
                assertEquals(PROMPTS.get(i), first.pairs().get(i).prompt());
            }
            // the answers are the base's greedy continuations
            dev.morastream.models.generate.Generator gen = new dev.morastream.models.generate.Generator(a, tok);
            assertEquals(gen.generate(PROMPTS.get(1), new dev.morastream.models.generate.GenerationConfig(8, 0, 1.0, 0, List.of("\n"), true),
                    null).text(), first.pairs().get(1).answer());

            // same base: read back, not generated (a model that would answer differently proves it)
            PseudoRehearsal.Loaded again = PseudoRehearsal.loadOrGenerate(cache, idA, PROMPTS, 8, b, tok, s -> { });
            assertFalse(again.generated());
            assertEquals(first.pairs(), again.pairs());
            assertEquals(first.file(), again.file());

            // another base: regenerated with it, and the stale cache removed
            PseudoRehearsal.Loaded other = PseudoRehearsal.loadOrGenerate(cache, idB, PROMPTS, 8, b, tok, s -> { });
            assertTrue(other.generated());
            assertNotEquals(first.file(), other.file());
            assertFalse(Files.exists(first.file()), "the cache of the old base is gone");
            assertNotEquals(first.pairs(), other.pairs(), "base b answers differently");

            // other prompts or another budget are another key too
            assertTrue(PseudoRehearsal.loadOrGenerate(cache, idB, PROMPTS.subList(0, 2), 8, b, tok, s -> { }).generated());
            assertTrue(PseudoRehearsal.loadOrGenerate(cache, idB, PROMPTS.subList(0, 2), 4, b, tok, s -> { }).generated());
        }
    }

    @Test
    void aDamagedCacheIsAnsweredAgain(@TempDir Path dir) throws IOException {
        ByteTokenizer tok = new ByteTokenizer();
        try (NDManager root = NDManager.newBaseManager(); LlamaModel a = TestModels.peaked(3, root)) {
            PseudoRehearsal.Loaded first = PseudoRehearsal.loadOrGenerate(dir, "base-a", PROMPTS, 6, a, tok, s -> { });
            List<String> lines = Files.readAllLines(first.file(), StandardCharsets.UTF_8);
            Files.writeString(first.file(), String.join("\n", lines.subList(0, 2)) + "\n{\"prompt\": 3", StandardCharsets.UTF_8);
            PseudoRehearsal.Loaded repaired = PseudoRehearsal.loadOrGenerate(dir, "base-a", PROMPTS, 6, a, tok, s -> { });
            assertTrue(repaired.generated());
            assertEquals(first.pairs(), repaired.pairs());
            assertFalse(PseudoRehearsal.loadOrGenerate(dir, "base-a", PROMPTS, 6, a, tok, s -> { }).generated());
        }
    }

    @Test
    void pairsPackIntoRowsWhoseCompletionMaskMarksTheAnswers() {
        ByteTokenizer tok = new ByteTokenizer();
        List<PseudoRehearsal.Pair> pairs = List.of(new PseudoRehearsal.Pair("Q: a?\nA:", " b"), new PseudoRehearsal.Pair("x is", " y."),
                new PseudoRehearsal.Pair("empty", "  "));
        PseudoRehearsal.Rows rows = PseudoRehearsal.rows(pairs, tok, 8, 0);
        assertFalse(rows.tokens().isEmpty());
        int answers = 0;
        for (int r = 0; r < rows.tokens().size(); r++) {
            int[] t = rows.tokens().get(r);
            float[] c = rows.completion().get(r);
            assertEquals(9, t.length);
            assertEquals(8, c.length);
            for (int j = 0; j < 8; j++) {
                if (c[j] > 0) {
                    answers++;
                    int id = t[j + 1];
                    assertTrue(id == ' ' || id == 'b' || id == 'y' || id == '.' || id == ByteTokenizer.EOS, "masked target " + id);
                }
            }
        }
        assertTrue(answers > 0);
    }

    @Test
    void heldOutLinesLoseTheirLastThirdToBecomePrompts() {
        List<String> p = PseudoRehearsal.linePrompts("The capital of Kelbelfaia is Sunix.\nshort\nAnith Anthoze was born in 1863.\n", 5);
        assertEquals(List.of("The capital of Kelbelfaia", "Anith Anthoze was born"), p);
    }
}
