package dev.morastream.models.tokenizer;

import dev.morastream.models.llama.LlamaConfig;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;

/** Text to token ids and back. Encoding never truncates and never adds special tokens. */
public interface TextTokenizer extends AutoCloseable {
    /** Ids of {@code text}, without BOS/EOS. */
    int[] encode(String text);

    /**
     * {@code text} framed as the model sees a document: BOS first when the tokenizer has one, and
     * the first EOS id last when {@code withEos} and the tokenizer has one.
     */
    default int[] encodeFramed(String text, boolean withEos) {
        int[] ids = encode(text);
        boolean b = bos() >= 0;
        boolean e = withEos && !eos().isEmpty();
        int[] out = new int[ids.length + (b ? 1 : 0) + (e ? 1 : 0)];
        if (b) {
            out[0] = bos();
        }
        System.arraycopy(ids, 0, out, b ? 1 : 0, ids.length);
        if (e) {
            out[out.length - 1] = eos().iterator().next();
        }
        return out;
    }

    /** Text of {@code ids}, special tokens skipped. Incomplete UTF-8 decodes to U+FFFD. */
    String decode(int[] ids);

    int vocabSize();

    /** Begin-of-sequence id, or -1 when the tokenizer has none. */
    int bos();

    /** Ids that end generation (may be empty). */
    Set<Integer> eos();

    /** Padding id, or -1. */
    int pad();

    /** A short name for logs and JSON output. */
    String name();

    @Override
    default void close() {}

    /**
     * The tokenizer of a model directory: its {@code tokenizer.json} through HuggingFace
     * tokenizers when present, the byte-level tokenizer otherwise.
     */
    static TextTokenizer forModel(Path dir, LlamaConfig config) {
        Path tj = dir.resolve("tokenizer.json");
        if (Files.isRegularFile(tj)) {
            try {
                return HfTokenizer.load(tj, config);
            } catch (IOException e) {
                throw new UncheckedIOException("cannot load " + tj, e);
            }
        }
        ByteTokenizer b = new ByteTokenizer();
        if (config.vocabSize() < b.vocabSize()) {
            throw new IllegalArgumentException(
                    dir + ": no tokenizer.json and vocab_size " + config.vocabSize()
                            + " is too small for the byte-level tokenizer (" + b.vocabSize() + ")");
        }
        return b;
    }
}
