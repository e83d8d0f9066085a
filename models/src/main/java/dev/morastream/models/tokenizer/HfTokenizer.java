package dev.morastream.models.tokenizer;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import dev.morastream.models.llama.LlamaConfig;
import java.io.IOException;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;

/**
 * A HuggingFace {@code tokenizer.json} through DJL's tokenizers, configured never to truncate,
 * pad or add special tokens (DJL truncates to 512 tokens by default).
 */
public final class HfTokenizer implements TextTokenizer {
    private final HuggingFaceTokenizer tokenizer;
    private final int vocab;
    private final int bos;
    private final Set<Integer> eos;

    private HfTokenizer(HuggingFaceTokenizer tokenizer, int vocab, int bos, Set<Integer> eos) {
        this.tokenizer = tokenizer;
        this.vocab = vocab;
        this.bos = bos;
        this.eos = eos;
    }

    public static HfTokenizer load(Path tokenizerJson, LlamaConfig config) throws IOException {
        HuggingFaceTokenizer t = HuggingFaceTokenizer.builder()
                .optTokenizerPath(tokenizerJson)
                .optAddSpecialTokens(false)
                .optTruncation(false)
                .optPadding(false)
                .build();
        return new HfTokenizer(t, config.vocabSize(), config.bosTokenId(), new HashSet<>(config.eosTokenIds()));
    }

    @Override
    public int[] encode(String text) {
        Encoding e = tokenizer.encode(text, false, false);
        long[] ids = e.getIds();
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            out[i] = Math.toIntExact(ids[i]);
        }
        return out;
    }

    @Override
    public String decode(int[] ids) {
        long[] l = new long[ids.length];
        for (int i = 0; i < ids.length; i++) {
            l[i] = ids[i];
        }
        return tokenizer.decode(l, true);
    }

    @Override
    public int vocabSize() {
        return vocab;
    }

    @Override
    public int bos() {
        return bos;
    }

    @Override
    public Set<Integer> eos() {
        return eos;
    }

    @Override
    public int pad() {
        return -1;
    }

    @Override
    public String name() {
        return "huggingface";
    }

    @Override
    public void close() {
        tokenizer.close();
    }
}
