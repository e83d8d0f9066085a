package dev.morastream.models.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import dev.morastream.models.llama.LlamaConfig;
import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokenizerTest {
    // ids of the hand-written WordLevel vocabulary in src/test/resources/tokenizer/tokenizer.json
    private static final int UNK = 0;
    private static final int S = 1;
    private static final int END_S = 2;
    private static final String[] WORDS = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"};

    private static Path tokenizerJson() throws URISyntaxException {
        return Path.of(TokenizerTest.class.getResource("/tokenizer/tokenizer.json").toURI());
    }

    /** A config whose BOS/EOS match the test vocabulary. */
    private static LlamaConfig configWithVocab(int vocab) {
        return new LlamaConfig(32, 48, 2, 4, 2, 8, vocab, 64, 1e-5, 10000.0, null, true, false, false, S, List.of(END_S));
    }

    // ---------------------------------------------------------------- ByteTokenizer

    @Test
    void byteTokenizerEncodesAsciiAsItsCodes() {
        ByteTokenizer t = new ByteTokenizer();
        String s = "Hello, world!\n\t~";
        int[] ids = t.encode(s);
        int[] want = s.chars().toArray();
        assertArrayEquals(want, ids, "ASCII ids must be the character codes");
        assertEquals(s, t.decode(ids), "ASCII round trip");
    }

    @Test
    void byteTokenizerRoundTripsMultiByteUtf8() {
        ByteTokenizer t = new ByteTokenizer();
        String s = "héllo wörld, ñandú — 日本語 😀👍🏽 e\u0301";
        int[] ids = t.encode(s);
        byte[] utf8 = s.getBytes(StandardCharsets.UTF_8);
        assertEquals(utf8.length, ids.length, "one id per UTF-8 byte");
        assertTrue(ids.length > s.length(), "multi-byte characters must give more ids than chars");
        for (int i = 0; i < ids.length; i++) {
            assertTrue(ids[i] >= 0 && ids[i] < 256, "id " + ids[i] + " at " + i + " outside 0..255");
            assertEquals(utf8[i] & 0xff, ids[i], "id at " + i + " is not the UTF-8 byte");
        }
        assertArrayEquals(new int[] {0xF0, 0x9F, 0x98, 0x80}, t.encode("😀"), "emoji is its 4 UTF-8 bytes");
        assertArrayEquals(new int[] {0xC3, 0xA9}, t.encode("é"), "é is its 2 UTF-8 bytes");
        assertEquals(s, t.decode(ids), "multi-byte round trip");
    }

    @Test
    void byteTokenizerDecodeSkipsSpecials() {
        ByteTokenizer t = new ByteTokenizer();
        assertEquals(256, t.bos());
        assertEquals(Set.of(257), t.eos());
        assertEquals(258, t.pad());
        assertEquals(259, t.vocabSize());
        String s = "añ😀";
        int[] ids = t.encode(s);
        int[] withSpecials = new int[ids.length + 5];
        withSpecials[0] = ByteTokenizer.BOS;
        withSpecials[1] = ByteTokenizer.PAD;
        System.arraycopy(ids, 0, withSpecials, 2, ids.length);
        withSpecials[ids.length + 2] = ByteTokenizer.EOS;
        withSpecials[ids.length + 3] = ByteTokenizer.PAD;
        withSpecials[ids.length + 4] = ByteTokenizer.BOS;
        assertEquals(s, t.decode(withSpecials), "BOS/EOS/PAD must be skipped in decode");
        assertEquals("", t.decode(new int[] {256, 257, 258}), "only specials decode to empty text");
    }

    @Test
    void byteTokenizerDecodesIncompleteUtf8ToReplacementChar() {
        ByteTokenizer t = new ByteTokenizer();
        int[] emoji = t.encode("😀");
        String d = t.decode(Arrays.copyOf(emoji, 2));
        assertTrue(d.contains("\uFFFD"), "cut UTF-8 must decode to U+FFFD, got " + d);
        assertEquals("a\uFFFDb", t.decode(new int[] {'a', 0xFF, 'b'}), "invalid byte must decode to U+FFFD");
    }

    // ---------------------------------------------------------------- HfTokenizer

    @Test
    void fixtureTemplateAddsSpecialsWhenAskedSoTheNextTestsMeanSomething() throws Exception {
        // DJL itself, asked for special tokens, applies the post-processor <s> A </s>
        try (HuggingFaceTokenizer raw = HuggingFaceTokenizer.newInstance(tokenizerJson(), Map.of())) {
            long[] ids = raw.encode("the fox", true, false).getIds();
            assertArrayEquals(new long[] {S, 3, 6, END_S}, ids, "fixture post-processor must add <s> ... </s>");
        }
    }

    @Test
    void hfTokenizerRoundTripsWithoutSpecialTokens() throws Exception {
        try (HfTokenizer t = HfTokenizer.load(tokenizerJson(), configWithVocab(15))) {
            String s = "the quick brown fox jumps over the lazy dog";
            int[] ids = t.encode(s);
            assertArrayEquals(new int[] {3, 4, 5, 6, 7, 8, 3, 9, 10}, ids, "WordLevel ids, and no <s>/</s> added");
            assertEquals(s, t.decode(ids), "decode of encode");
            assertArrayEquals(new int[] {13, 11, 14, 12}, t.encode("hello, world."), "punctuation split by Whitespace");
            assertArrayEquals(new int[] {3, UNK, 6}, t.encode("the zebra fox"), "unknown word maps to [UNK]");
            assertEquals("the quick", t.decode(new int[] {S, 3, 4, END_S}), "special tokens skipped in decode");
            assertEquals(S, t.bos(), "bos from config");
            assertEquals(Set.of(END_S), t.eos(), "eos from config");
            assertEquals(15, t.vocabSize(), "vocab from config");
        }
    }

    @Test
    void hfTokenizerNeverTruncates() throws Exception {
        StringBuilder sb = new StringBuilder();
        int n = 2000;
        for (int i = 0; i < n; i++) {
            sb.append(i == 0 ? "" : " ").append(WORDS[i % WORDS.length]);
        }
        String text = sb.toString();
        try (HfTokenizer t = HfTokenizer.load(tokenizerJson(), configWithVocab(15))) {
            int[] ids = t.encode(text);
            assertEquals(n, ids.length, "2,000 words must give 2,000 ids (DJL's default truncates to 512)");
            for (int i = 0; i < n; i++) {
                assertEquals(3 + i % WORDS.length, ids[i], "id of word " + i);
            }
            assertEquals(text, t.decode(ids), "long text round trip");
        }
    }

    @Test
    void truncationAndPaddingInTokenizerJsonAreOverridden(@TempDir Path dir) throws Exception {
        // real checkpoints sometimes ship tokenizer.json with truncation/padding set
        String json = Files.readString(tokenizerJson())
                .replace("\"truncation\": null",
                        "\"truncation\": {\"direction\": \"Right\", \"max_length\": 8, \"strategy\": \"LongestFirst\", \"stride\": 0}")
                .replace("\"padding\": null",
                        "\"padding\": {\"strategy\": {\"Fixed\": 16}, \"direction\": \"Right\", \"pad_to_multiple_of\": null,"
                                + " \"pad_id\": 0, \"pad_type_id\": 0, \"pad_token\": \"[UNK]\"}");
        assertTrue(json.contains("\"max_length\": 8") && json.contains("\"Fixed\": 16"), "fixture edit applied");
        Path file = dir.resolve("tokenizer.json");
        Files.writeString(file, json);
        try (HfTokenizer t = HfTokenizer.load(file, configWithVocab(15))) {
            String text = String.join(" ", java.util.Collections.nCopies(20, "dog"));
            int[] ids = t.encode(text);
            assertEquals(20, ids.length, "truncation to 8 in tokenizer.json must not apply");
            assertArrayEquals(new int[] {3, 6}, t.encode("the fox"), "padding to 16 in tokenizer.json must not apply");
        }
    }

    @Test
    void forModelPicksHfTokenizerWhenTokenizerJsonExists(@TempDir Path dir) throws Exception {
        Files.copy(tokenizerJson(), dir.resolve("tokenizer.json"));
        try (TextTokenizer t = TextTokenizer.forModel(dir, configWithVocab(15))) {
            assertInstanceOf(HfTokenizer.class, t, "tokenizer.json present");
            assertArrayEquals(new int[] {13, 14}, t.encode("hello world"), "uses the directory's vocabulary");
        }
    }

    @Test
    void forModelFallsBackToBytesWithoutTokenizerJson(@TempDir Path dir) throws IOException {
        try (TextTokenizer t = TextTokenizer.forModel(dir, LlamaConfig.tiny())) {
            assertInstanceOf(ByteTokenizer.class, t, "no tokenizer.json");
            assertArrayEquals(new int[] {'h', 'i'}, t.encode("hi"));
        }
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> TextTokenizer.forModel(dir, configWithVocab(100)), "vocab too small for bytes");
        assertTrue(e.getMessage().contains("100"), "message names the vocab size: " + e.getMessage());
    }
}
