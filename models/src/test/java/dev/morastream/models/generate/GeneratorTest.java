package dev.morastream.models.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.ndarray.NDManager;
import dev.morastream.models.llama.LlamaModel;
import dev.morastream.models.tokenizer.ByteTokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

class GeneratorTest {
    private static final int NEW = 40;
    private static NDManager root;
    private static LlamaModel model;
    private static int context;

    @BeforeAll
    static void setUp() {
        root = NDManager.newBaseManager();
        model = TestModels.peaked(11, root);
        context = model.config().maxPositionEmbeddings();
        // Any temporary written into the weights' manager (the wrong first operand) now fails.
        model.manager().cap();
    }

    @AfterAll
    static void tearDown() {
        model.close();
        root.close();
    }

    private static Generator bytes() {
        return new Generator(model, new ByteTokenizer());
    }

    private static Generator letters(Set<Integer> eos) {
        return new Generator(model, new TestModels.Letters(eos));
    }

    private static int[] prompt(int n) {
        int[] p = new int[n];
        p[0] = ByteTokenizer.BOS;
        for (int i = 1; i < n; i++) {
            p[i] = "The quick brown fox jumps over the lazy dog. ".charAt(i % 45);
        }
        return p;
    }

    // ---- batched greedy answers against one generation each ------------------------------------

    @Test
    void greedyBatchGivesEachPromptWhatItGetsAlone() {
        // prompts of several lengths (some shared, more than one batch of 64 for one length), EOS ids and
        // stop strings that end rows at different steps, a budget that ends the others
        Generator g = letters(Set.of(3, 7));
        List<int[]> prompts = new java.util.ArrayList<>();
        java.util.Random r = new java.util.Random(5);
        for (int i = 0; i < 150; i++) {
            int n = i < 70 ? 6 : 2 + r.nextInt(9);
            int[] p = new int[n];
            p[0] = 256;
            for (int k = 1; k < n; k++) {
                p[k] = r.nextInt(9);
            }
            prompts.add(p);
        }
        for (GenerationConfig cfg : List.of(new GenerationConfig(12, 0, 1.0, 0, List.of("h ", "gg"), true),
                new GenerationConfig(9, 0, 1.0, 0, List.of(), false))) {
            List<Generator.Answer> batched = g.greedyBatch(prompts, cfg);
            assertEquals(prompts.size(), batched.size());
            int stopped = 0;
            for (int i = 0; i < prompts.size(); i++) {
                GenerationResult alone = g.generate(prompts.get(i), cfg, null, Generator.Scoring.NONE);
                assertEquals(alone.text(), batched.get(i).text(), "prompt " + i + " " + Arrays.toString(prompts.get(i)));
                assertArrayEquals(alone.tokenIds(), batched.get(i).ids(), "prompt " + i);
                stopped += alone.tokenIds().length < cfg.maxNewTokens() ? 1 : 0;
            }
            if (cfg.stopOnEos()) {
                assertTrue(stopped > 10 && stopped < prompts.size(), "rows should end at different steps: " + stopped);
            }
        }
        assertThrows(IllegalArgumentException.class, () -> g.greedyBatch(prompts, GenerationConfig.sampling(4, 1.0, 1.0, 1)));
    }

    // ---- KV cache against full recomputation -------------------------------------------------

    @Test
    void greedyWithCacheEqualsRecomputation() {
        GenerationConfig cfg = GenerationConfig.greedy(NEW).withStopOnEos(false);
        int[] cached = bytes().generateIds(prompt(9), cfg);
        int[] full = bytes().generateIdsWithoutCache(prompt(9), cfg);
        assertEquals(NEW, cached.length);
        assertArrayEquals(full, cached);
    }

    @Test
    void samplingWithCacheEqualsRecomputation() {
        for (GenerationConfig cfg : List.of(
                GenerationConfig.sampling(NEW, 1.0, 0.9, 1).withStopOnEos(false),
                GenerationConfig.sampling(NEW, 0.7, 1.0, 2).withStopOnEos(false),
                GenerationConfig.sampling(NEW, 1.3, 0.5, 3).withStopOnEos(false))) {
            int[] cached = bytes().generateIds(prompt(5), cfg);
            int[] full = bytes().generateIdsWithoutCache(prompt(5), cfg);
            assertEquals(NEW, cached.length);
            assertArrayEquals(full, cached, cfg.toString());
        }
    }

    @Test
    void sameSeedSameTokensOtherSeedOtherTokens() {
        GenerationConfig a = GenerationConfig.sampling(NEW, 1.0, 0.95, 42).withStopOnEos(false);
        int[] first = bytes().generateIds(prompt(5), a);
        assertArrayEquals(first, bytes().generateIds(prompt(5), a));
        assertFalse(Arrays.equals(first, bytes().generateIds(prompt(5), a.withSeed(43))));
        // sampling really samples: not the greedy sequence, and not one repeated token
        assertFalse(Arrays.equals(first, bytes().generateIds(prompt(5), GenerationConfig.greedy(NEW).withStopOnEos(false))));
        assertTrue(Arrays.stream(first).distinct().count() > 10, Arrays.toString(first));
    }

    @Test
    void greedyIgnoresTheSeed() {
        GenerationConfig g = GenerationConfig.greedy(NEW).withStopOnEos(false);
        assertArrayEquals(bytes().generateIds(prompt(5), g), bytes().generateIds(prompt(5), g.withSeed(99)));
    }

    // ---- stopping -----------------------------------------------------------------------------

    @Test
    void maxNewTokensEndsWithLength() {
        GenerationResult r = bytes().generate("Hello", GenerationConfig.greedy(7).withStopOnEos(false), null);
        assertEquals(7, r.tokenIds().length);
        assertEquals(GenerationResult.LENGTH, r.finishReason());
        assertEquals(6, r.promptTokens()); // BOS + 5 bytes
        assertTrue(r.timeToFirstTokenNanos() > 0 && r.timeToFirstTokenNanos() <= r.totalNanos());

        GenerationResult none = bytes().generate("Hello", GenerationConfig.greedy(0), null);
        assertEquals(0, none.tokenIds().length);
        assertEquals("", none.text());
        assertEquals(GenerationResult.LENGTH, none.finishReason());
    }

    @Test
    void fullContextEndsWithLength() {
        GenerationConfig cfg = GenerationConfig.greedy(NEW).withStopOnEos(false);
        int[] cached = bytes().generateIds(prompt(context - 4), cfg);
        assertEquals(4, cached.length);
        assertArrayEquals(bytes().generateIdsWithoutCache(prompt(context - 4), cfg), cached);

        String text = "a".repeat(context - 4); // BOS + 60 = 61 tokens: room for 3 more
        GenerationResult r = bytes().generate(text, cfg, null);
        assertEquals(context - 3, r.promptTokens());
        assertEquals(3, r.tokenIds().length);
        assertEquals(GenerationResult.LENGTH, r.finishReason());

        GenerationResult full = bytes().generate("a".repeat(context - 1), cfg, null);
        assertEquals(0, full.tokenIds().length);
        assertEquals(GenerationResult.LENGTH, full.finishReason());
    }

    @Test
    void promptLongerThanContextIsRefusedClearly() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> bytes().generate("a".repeat(context), GenerationConfig.greedy(5), null));
        assertTrue(e.getMessage().contains((context + 1) + " tokens"), e.getMessage());
        assertTrue(e.getMessage().contains("context"), e.getMessage());
        assertTrue(e.getMessage().contains(context + " tokens"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> bytes().generateIds(prompt(context + 1), GenerationConfig.greedy(5)));
    }

    @Test
    void eosEndsGenerationWithStop() {
        GenerationConfig cfg = GenerationConfig.greedy(NEW);
        int[] free = letters(Set.of()).generate("abc", cfg, null).tokenIds();
        assertEquals(NEW, free.length);
        int k = firstNewTokenAtOrAfter(free, 3);
        int eosId = free[k];

        GenerationResult r = letters(Set.of(eosId)).generate("abc", cfg, null);
        assertEquals(GenerationResult.STOP, r.finishReason());
        assertArrayEquals(Arrays.copyOf(free, k + 1), r.tokenIds()); // ends with the EOS id
        assertEquals(letters(Set.of()).generate("abc", GenerationConfig.greedy(k), null).text(), r.text());

        GenerationResult ignored = letters(Set.of(eosId)).generate("abc", cfg.withStopOnEos(false), null);
        assertEquals(NEW, ignored.tokenIds().length);
        assertEquals(GenerationResult.LENGTH, ignored.finishReason());
    }

    /** First position {@code >= from} whose token did not occur before it. */
    private static int firstNewTokenAtOrAfter(int[] ids, int from) {
        for (int k = from; k < ids.length; k++) {
            final int id = ids[k];
            if (Arrays.stream(ids, 0, k).noneMatch(x -> x == id)) {
                return k;
            }
        }
        throw new AssertionError("no new token after " + from + " in " + Arrays.toString(ids));
    }

    @Test
    void stopStringCutsTheTextBeforeIt() {
        GenerationConfig cfg = GenerationConfig.sampling(NEW, 1.0, 1.0, 5).withStopOnEos(false);
        String free = letters(Set.of()).generate("abc", cfg, null).text();
        assertEquals(NEW, free.length()); // one char per token
        String stop = free.substring(20, 23);
        int at = free.indexOf(stop);

        List<String> deltas = new ArrayList<>();
        GenerationResult r = letters(Set.of()).generate("abc", cfg.withStopStrings(List.of("zzz", stop)), deltas::add);
        assertEquals(free.substring(0, at), r.text());
        assertEquals(GenerationResult.STOP, r.finishReason());
        assertEquals(at + stop.length(), r.tokenIds().length); // up to the token completing the stop
        assertEquals(r.text(), String.join("", deltas));
        assertTrue(deltas.stream().noneMatch(String::isEmpty));

        // the earliest of several stop strings wins
        String early = free.substring(at + 1, at + 2);
        int atEarly = free.indexOf(early);
        GenerationResult e = letters(Set.of()).generate("abc", cfg.withStopStrings(List.of(stop, early)), null);
        assertEquals(free.substring(0, Math.min(at, atEarly)), e.text());
    }

    @Test
    void streamedDeltasConcatenateToTheTextOverRawBytes() {
        // Random bytes: many incomplete or invalid UTF-8 sequences, decoded as U+FFFD.
        for (long seed = 1; seed <= 4; seed++) {
            GenerationConfig cfg = GenerationConfig.sampling(NEW, 1.0, 1.0, seed).withStopOnEos(false);
            List<String> deltas = new ArrayList<>();
            GenerationResult r = bytes().generate("Once", cfg, deltas::add);
            assertEquals(new ByteTokenizer().decode(r.tokenIds()), r.text());
            assertEquals(r.text(), String.join("", deltas));
        }
    }

    // ---- streaming text unit cases ------------------------------------------------------------

    @Test
    void streamingHoldsBackIncompleteUtf8() {
        List<String> out = new ArrayList<>();
        StreamingText s = new StreamingText(List.of(), out::add);
        s.update("ab\uFFFD");
        assertEquals(List.of("ab"), out);
        s.update("ab\uFFFD"); // still incomplete
        assertEquals(List.of("ab"), out);
        s.update("ab\u20AC");
        assertEquals(List.of("ab", "\u20AC"), out);
        assertEquals("ab\u20ACc\uFFFD", s.finish("ab\u20ACc\uFFFD")); // a dangling byte stays at the end
        assertEquals(List.of("ab", "\u20AC", "c\uFFFD"), out);
    }

    @Test
    void streamingHoldsBackPossibleStopStringStarts() {
        List<String> out = new ArrayList<>();
        StreamingText s = new StreamingText(List.of("END", "\n\n"), out::add);
        assertFalse(s.update("xxE"));
        assertEquals(List.of("xx"), out);
        assertFalse(s.update("xxEN"));
        assertEquals(List.of("xx"), out);
        assertFalse(s.update("xxENx\n"));
        assertEquals(List.of("xx", "ENx"), out);
        assertTrue(s.update("xxENx\nyEND"));
        assertEquals("xxENx\ny", s.text());
        assertEquals(List.of("xx", "ENx", "\ny"), out);

        List<String> out2 = new ArrayList<>();
        StreamingText t = new StreamingText(List.of("END"), out2::add);
        assertFalse(t.update("aEN"));
        assertEquals("aEN", t.finish("aEN")); // generation ended without completing the stop
        assertEquals(List.of("a", "EN"), out2);
    }

    @Test
    void samplerKeepsOnlyTheNucleus() {
        float[] logits = {0f, 5f, 4.9f, -3f}; // probabilities about 0.004, 0.52, 0.47, 0.0002
        for (long seed = 0; seed < 200; seed++) {
            int id = new Sampler(GenerationConfig.sampling(1, 1.0, 0.5, seed)).next(logits);
            assertEquals(1, id, "top-p 0.5 keeps only the most likely token");
            int two = new Sampler(GenerationConfig.sampling(1, 1.0, 0.9, seed)).next(logits);
            assertTrue(two == 1 || two == 2, "top-p 0.9 keeps the two likely tokens, got " + two);
        }
        assertEquals(1, new Sampler(GenerationConfig.greedy(1)).next(logits));
    }
}
