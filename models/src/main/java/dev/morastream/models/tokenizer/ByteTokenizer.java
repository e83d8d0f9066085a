package dev.morastream.models.tokenizer;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Set;

/** Byte-level tokenizer: ids 0..255 are the UTF-8 bytes, then BOS = 256, EOS = 257, PAD = 258. */
public final class ByteTokenizer implements TextTokenizer {
    public static final int BOS = 256;
    public static final int EOS = 257;
    public static final int PAD = 258;
    public static final int VOCAB = 259;

    @Override
    public int[] encode(String text) {
        byte[] b = text.getBytes(StandardCharsets.UTF_8);
        int[] ids = new int[b.length];
        for (int i = 0; i < b.length; i++) {
            ids[i] = b[i] & 0xff;
        }
        return ids;
    }

    @Override
    public String decode(int[] ids) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(ids.length);
        for (int id : ids) {
            if (id >= 0 && id < 256) {
                out.write(id);
            }
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    @Override
    public int vocabSize() {
        return VOCAB;
    }

    @Override
    public int bos() {
        return BOS;
    }

    @Override
    public Set<Integer> eos() {
        return Set.of(EOS);
    }

    @Override
    public int pad() {
        return PAD;
    }

    @Override
    public String name() {
        return "byte";
    }
}
