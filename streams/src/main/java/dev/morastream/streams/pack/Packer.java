package dev.morastream.streams.pack;

import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.models.train.TrainBatch;
import dev.morastream.streams.records.DecodeResult;
import dev.morastream.streams.records.DomainRecord;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import org.apache.kafka.common.TopicPartition;

/**
 * Packs tokenized records per domain into fixed-length training sequences: each record becomes
 * {@code BOS + tokens + EOS} (BOS only when the tokenizer has one), the token streams of a domain's
 * records are concatenated in arrival order and cut into rows of {@code T + 1} tokens, {@code B} rows
 * to a batch. A record may span rows and batches; nothing is dropped: the tail stays buffered until
 * the next records fill it, or {@link #flush()} pads it out at shutdown.
 *
 * <p>Offsets: records must be offered in offset order per partition (Kafka's order). Each batch
 * says, for every partition seen so far, where its domain resumes after it ({@link ResumePoint}):
 * the offset of the domain's first record in that partition that is not wholly in this or an
 * earlier batch (with the count of its tokens already emitted), or, when there is none, the offset
 * after the last record seen in that partition. Records of other domains and rejected records are
 * therefore skipped over by a domain's resume point but never lost: the Kafka offset to commit is
 * the minimum over domains. {@link #resumeFrom} drops what a checkpoint says is absorbed.
 *
 * <p>Not thread-safe: one stream stage owns it. Memory per domain: the tail, less than
 * {@code B (T + 1)} tokens plus one record.
 */
public final class Packer {
    private final TextTokenizer tokenizer;
    private final int seqLen;
    private final int batchSize;
    private final Map<String, DomainBuffer> domains = new LinkedHashMap<>();
    /** Per partition, the offset after the last record offered (of any domain, or rejected). */
    private final Map<TopicPartition, Long> seen = new HashMap<>();
    /** Per domain and partition, the checkpoint's resume point (records before it are dropped). */
    private final Map<String, Map<TopicPartition, ResumePoint>> resumeFrom = new HashMap<>();
    /**
     * Per domain, the record split by the checkpoint (partition and offset), while it has not come
     * back yet: the domain's other records wait for it, so the resumed token stream continues
     * exactly where the checkpoint cut it.
     */
    private final Map<String, Map.Entry<TopicPartition, Long>> straddler = new HashMap<>();
    private final Map<String, List<Piece>> held = new HashMap<>();
    private final Map<String, Long> heldTokens = new HashMap<>();
    private final long maxHeldTokens;
    /** Fill batches token by token ({@link DomainBuffer#cutNaive}): the reference. */
    private final boolean naive;
    /** The tokenizer's first EOS id, which ends every record. */
    private final int eos;
    /** The tokenizer's BOS id, which starts every record, or negative for none. */
    private final int bos;

    /**
     * @param tokenizer encodes text; its {@link TextTokenizer#bos()} and first {@link TextTokenizer#eos()} frame records
     * @param seqLen T: predicted positions per row (rows hold T + 1 tokens)
     * @param batchSize B: rows per batch
     */
    public Packer(TextTokenizer tokenizer, int seqLen, int batchSize) {
        this(tokenizer, seqLen, batchSize, false);
    }

    /**
     * The reference packer: the same behaviour, each batch filled token by token (the fast one
     * copies each record's span of a batch at once). For tests that check the fast one against it.
     */
    public static Packer naive(TextTokenizer tokenizer, int seqLen, int batchSize) {
        return new Packer(tokenizer, seqLen, batchSize, true);
    }

    private Packer(TextTokenizer tokenizer, int seqLen, int batchSize, boolean naive) {
        this.naive = naive;
        if (seqLen < 1 || batchSize < 1) {
            throw new IllegalArgumentException("seqLen and batchSize must be positive");
        }
        if (tokenizer.eos().isEmpty()) {
            throw new IllegalArgumentException("tokenizer " + tokenizer.name() + " has no EOS id");
        }
        this.tokenizer = Objects.requireNonNull(tokenizer);
        this.eos = tokenizer.eos().iterator().next();
        this.bos = tokenizer.bos();
        this.seqLen = seqLen;
        this.batchSize = batchSize;
        this.maxHeldTokens = Math.max(100_000L, 8L * batchSize * (seqLen + 1));
    }

    /** Records of {@code domain} before these points were absorbed by its trainer: drop them (and the tokens skipped). */
    public void resumeFrom(String domain, Map<TopicPartition, ResumePoint> points) {
        resumeFrom.computeIfAbsent(domain, d -> new HashMap<>()).putAll(points);
        points.forEach((tp, p) -> {
            if (p.skipTokens() > 0) {
                straddler.put(domain, Map.entry(tp, p.offset()));
            }
        });
    }

    /** Offers a decoded record; returns the batches it completes (often none). */
    public List<PackedBatch> add(DecodeResult r) {
        return add(r, null);
    }

    /**
     * Offers a decoded record with its tokens, {@link #encode encoded} beforehand ({@code null} for a
     * rejected record, or to encode it here); returns the batches it completes (often none).
     */
    public List<PackedBatch> add(DecodeResult r, Encoded encoded) {
        List<PackedBatch> out = new ArrayList<>(1);
        TopicPartition tp = new TopicPartition(r.topic(), r.partition());
        if (!(r instanceof DomainRecord rec)) {
            skip(tp, r.offset());
            return out;
        }
        if (encoded == null && absorbed(rec.domain(), tp, rec.offset())) {
            skip(tp, rec.offset()); // not worth encoding
            return out;
        }
        Encoded enc = encoded != null ? encoded : encode(rec);
        if (enc.offset() != rec.offset() || !enc.tp().equals(tp)) {
            throw new IllegalArgumentException("tokens of " + enc.tp() + "@" + enc.offset() + " offered with " + tp + "@" + rec.offset());
        }
        add(tp, rec.offset(), rec.id(), rec.domain(), rec.isCompletion(), enc, out);
        return out;
    }

    /**
     * Offers a record to train, encoded beforehand with its id and domain (the stream's path: no
     * {@link DomainRecord} in between); appends the batches it completes to {@code out}.
     */
    public void add(Encoded enc, List<PackedBatch> out) {
        add(enc.tp(), enc.offset(), enc.id(), enc.domain(), enc.completion(), enc, out);
    }

    /** Offers a record that is not trained (rejected): only its offset counts (domains' resume points pass it). */
    public void skip(TopicPartition tp, long offset) {
        Long prev = seen.get(tp);
        if (prev != null && offset < prev) {
            throw new IllegalStateException("offset " + offset + " of " + tp + " after " + (prev - 1) + ": out of order");
        }
        seen.put(tp, offset + 1);
    }

    private boolean absorbed(String domain, TopicPartition tp, long offset) {
        ResumePoint from = resumeFrom.getOrDefault(domain, Map.of()).get(tp);
        return from != null && offset < from.offset();
    }

    private void add(TopicPartition tp, long offset, String id, String domain, boolean completion, Encoded enc,
                     List<PackedBatch> out) {
        skip(tp, offset);
        int skip = 0;
        ResumePoint from = resumeFrom.getOrDefault(domain, Map.of()).get(tp);
        if (from != null) {
            if (offset < from.offset()) {
                return;
            }
            if (offset == from.offset()) {
                skip = from.skipTokens();
            }
        }
        Piece p = new Piece(tp, offset, id, enc.tokens(), enc.bytes(), bos, eos, enc.promptEnd(), skip, completion);
        DomainBuffer buf = domains.get(domain);
        if (buf == null) {
            buf = new DomainBuffer(domain);
            domains.put(domain, buf);
        }
        Map.Entry<TopicPartition, Long> waitFor = straddler.isEmpty() ? null : straddler.get(domain);
        if (waitFor != null) {
            long heldNow = heldTokens.merge(domain, (long) p.length, Long::sum);
            if (!waitFor.getKey().equals(tp) && heldNow <= maxHeldTokens) {
                held.computeIfAbsent(domain, d -> new ArrayList<>()).add(p);
                return;
            }
            heldTokens.remove(domain);
            if (!waitFor.getKey().equals(tp)) {
                // waited too long (its partition may have gone to another consumer): go on without it;
                // its remaining tokens still train exactly once, later in the stream
                held.computeIfAbsent(domain, d -> new ArrayList<>()).add(p);
                straddler.remove(domain);
                for (Piece x : held.remove(domain)) {
                    enqueue(buf, x);
                }
                cutFull(buf, out);
                return;
            }
            // the split record (or, if it is gone from the topic, the first one after it) comes first
            straddler.remove(domain);
            enqueue(buf, p);
            for (Piece h : held.getOrDefault(domain, List.of())) {
                enqueue(buf, h);
            }
            held.remove(domain);
        } else {
            enqueue(buf, p);
        }
        cutFull(buf, out);
    }

    private static void enqueue(DomainBuffer buf, Piece p) {
        if (p.start < p.length) { // else wholly absorbed already
            buf.pending.addLast(p);
            buf.tokens += p.length - p.start;
        }
    }

    private List<PackedBatch> cutFull(DomainBuffer buf) {
        List<PackedBatch> out = new ArrayList<>();
        cutFull(buf, out);
        return out;
    }

    private void cutFull(DomainBuffer buf, List<PackedBatch> out) {
        while (buf.tokens >= (long) batchSize * (seqLen + 1)) {
            out.add(buf.cut(Long.MAX_VALUE, false));
        }
    }

    /**
     * Gives up partitions (revoked from this consumer, or the stream ends): a record of theirs that
     * a batch has already split is finished first, in batches of its own (padded), so that no record
     * is ever divided between two owners; then every other buffered record of theirs is dropped
     * (never trained here: the next owner reads it from the committed offset), and so is what this
     * packer knows of them (resume points, offsets seen). Records of other partitions are kept.
     *
     * @return the batches that finish split records (in the order they must be trained), then any
     *     batches that records of a domain no longer waiting for a split record now fill
     */
    public List<PackedBatch> release(Set<TopicPartition> partitions) {
        return release(partitions, Set.of(), new HashMap<>());
    }

    /**
     * As {@link #release(Set)}, and puts in {@code positions}, for each of {@code domains} and each
     * released partition read here, how far the domain is there once the batches emitted so far
     * (these included) are absorbed: the offset of its first record there that was not wholly packed
     * (dropped now, for the next owner), else the offset after the last record read there (what lies
     * between is other domains' records or rejected ones). A domain still waiting there for the
     * record its checkpoint split is no further than that record. This is what lets a hand-over
     * commit up to where the partition was read even when its last records are all of one domain.
     */
    public List<PackedBatch> release(Set<TopicPartition> partitions, Set<String> domains,
                                     Map<String, Map<TopicPartition, Long>> positions) {
        List<PackedBatch> out = new ArrayList<>();
        long full = (long) batchSize * (seqLen + 1);
        for (DomainBuffer buf : this.domains.values()) {
            for (Piece head = buf.pending.peekFirst(); head != null && head.start > 0 && partitions.contains(head.tp);
                 head = buf.pending.peekFirst()) {
                long rest = head.length - head.start;
                out.add(buf.cut(Math.min(rest, full), rest < full));
            }
        }
        for (String d : domains) {
            for (TopicPartition tp : partitions) {
                Long next = seen.get(tp);
                if (next == null) {
                    continue;
                }
                long at = next;
                DomainBuffer buf = this.domains.get(d);
                for (Piece p : buf == null ? List.<Piece>of() : buf.pending) {
                    if (p.tp.equals(tp)) {
                        at = Math.min(at, p.offset);
                    }
                }
                for (Piece p : held.getOrDefault(d, List.of())) {
                    if (p.tp.equals(tp)) {
                        at = Math.min(at, p.offset);
                    }
                }
                Map.Entry<TopicPartition, Long> waitFor = straddler.get(d);
                if (waitFor != null && waitFor.getKey().equals(tp)) {
                    at = Math.min(at, waitFor.getValue());
                }
                positions.computeIfAbsent(d, x -> new HashMap<>()).put(tp, at);
            }
        }
        for (DomainBuffer buf : this.domains.values()) {
            buf.pending.removeIf(p -> {
                if (partitions.contains(p.tp)) {
                    buf.tokens -= p.length - p.start;
                    return true;
                }
                return false;
            });
        }
        held.forEach((domain, pieces) -> pieces.removeIf(p -> partitions.contains(p.tp)));
        for (String domain : List.copyOf(straddler.keySet())) {
            if (partitions.contains(straddler.get(domain).getKey())) {
                // the split record will not come back here: the others stop waiting for it
                straddler.remove(domain);
                heldTokens.remove(domain);
                DomainBuffer buf = this.domains.computeIfAbsent(domain, DomainBuffer::new);
                for (Piece p : held.getOrDefault(domain, List.of())) {
                    enqueue(buf, p);
                }
                held.remove(domain);
                out.addAll(cutFull(buf));
            }
        }
        seen.keySet().removeAll(partitions);
        resumeFrom.values().forEach(points -> points.keySet().removeAll(partitions));
        return out;
    }

    /** The partitions this packer has seen records of or has resume points for. */
    public Set<TopicPartition> partitions() {
        Set<TopicPartition> all = new HashSet<>(seen.keySet());
        resumeFrom.values().forEach(points -> all.addAll(points.keySet()));
        return all;
    }

    /**
     * Takes on {@code partition} (assigned to this consumer): resumes each domain there at its point
     * ({@link #resumeFrom}), after {@link #release releasing} anything still known of it from an
     * earlier assignment.
     *
     * @return what that release returns (nothing when the partition was released when it was revoked)
     */
    public List<PackedBatch> assign(TopicPartition partition, Map<String, ResumePoint> points) {
        List<PackedBatch> out = release(Set.of(partition));
        points.forEach((domain, p) -> resumeFrom(domain, Map.of(partition, p)));
        return out;
    }

    /**
     * Pads and emits every domain's buffered tail (target mask 0 on padding), including records
     * still waiting for a split record to come back: for shutdown.
     */
    public List<PackedBatch> flush() {
        held.forEach((domain, pieces) -> pieces.forEach(p -> enqueue(domains.get(domain), p)));
        held.clear();
        heldTokens.clear();
        straddler.clear();
        return flushIdle();
    }

    /**
     * Pads and emits every domain's buffered tail (target mask 0 on padding), when the topic is
     * quiet; records waiting for a split record to come back keep waiting.
     */
    public List<PackedBatch> flushIdle() {
        List<PackedBatch> out = new ArrayList<>();
        for (DomainBuffer buf : domains.values()) {
            while (buf.tokens > 0) {
                out.add(buf.cut(Long.MAX_VALUE, true));
            }
        }
        return out;
    }

    /** Tokens buffered for {@code domain}, not yet in a batch. */
    public long bufferedTokens(String domain) {
        DomainBuffer b = domains.get(domain);
        return b == null ? 0 : b.tokens;
    }

    /**
     * A record's tokens as the packer frames them ({@code BOS + tokens + EOS}), with where its prompt
     * ends (0 for a text record), and what the packer keeps of the record: its id, domain and kind.
     * The tokens are either {@code tokens}, framed, or {@code bytes}: the record's UTF-8 bytes as
     * byte-level ids {@code 0..255}, which the packer frames itself and widens straight into the
     * batch (no {@code int} per token in between); exactly one of the two is set.
     *
     * @param completion a prompt/completion record (its targets before {@code promptEnd} are prompt)
     * @param promptEnd in framed positions (BOS included)
     */
    public record Encoded(TopicPartition tp, long offset, String id, String domain, boolean completion, int[] tokens,
                          int promptEnd, byte[] bytes) {
        public Encoded {
            if ((tokens == null) == (bytes == null)) {
                throw new IllegalArgumentException("a record's tokens are ids or bytes");
            }
        }

        /** Framed ids. */
        public Encoded(TopicPartition tp, long offset, String id, String domain, boolean completion, int[] tokens, int promptEnd) {
            this(tp, offset, id, domain, completion, tokens, promptEnd, null);
        }

        /** Byte-level ids, framed by the packer. */
        public static Encoded ofBytes(TopicPartition tp, long offset, String id, String domain, boolean completion, byte[] bytes,
                                      int promptEnd) {
            return new Encoded(tp, offset, id, domain, completion, null, promptEnd, bytes);
        }
    }

    /**
     * Tokenizes a record for {@link #add(DecodeResult, Encoded)}: touches only the tokenizer, so it
     * may run on other threads than the packer's, in parallel (the tokenizers are thread-safe).
     * Throws what the tokenizer throws.
     */
    public Encoded encode(DomainRecord r) {
        int bos = tokenizer.bos();
        int[] a;
        int[] b;
        if (r.isCompletion()) {
            a = tokenizer.encode(r.prompt());
            b = tokenizer.encode(r.completion());
        } else {
            a = new int[0];
            b = tokenizer.encode(r.text());
        }
        int head = bos >= 0 ? 1 : 0;
        int[] tokens = new int[head + a.length + b.length + 1];
        if (head == 1) {
            tokens[0] = bos;
        }
        System.arraycopy(a, 0, tokens, head, a.length);
        System.arraycopy(b, 0, tokens, head + a.length, b.length);
        tokens[tokens.length - 1] = eos;
        // completion flag per token: a target counts for completion-only loss when it is a
        // completion token (or EOS) of a prompt/completion record, or any token of a text record
        int promptEnd = r.isCompletion() ? head + a.length : 0;
        return new Encoded(new TopicPartition(r.topic(), r.partition()), r.offset(), r.id(), r.domain(), r.isCompletion(), tokens,
                promptEnd);
    }

    private static final class Piece {
        final TopicPartition tp;
        final long offset;
        final String id;
        /** Framed ids, or {@code null}: then {@link #bytes} framed by {@link #bos} (when >= 0) and {@link #eos}. */
        final int[] tokens;
        final byte[] bytes;
        final int bos;
        final int eos;
        /** Tokens, framing included. */
        final int length;
        /** Tokens before this index are prompt (their targets do not count as completion). */
        final int promptEnd;
        final boolean completion;
        int start;

        Piece(TopicPartition tp, long offset, String id, int[] tokens, byte[] bytes, int bos, int eos, int promptEnd, int skip,
              boolean completion) {
            this.tp = tp;
            this.offset = offset;
            this.id = id;
            this.tokens = tokens;
            this.bytes = bytes;
            this.bos = bos;
            this.eos = eos;
            this.length = tokens != null ? tokens.length : (bos >= 0 ? 1 : 0) + bytes.length + 1;
            this.promptEnd = promptEnd;
            this.start = Math.min(skip, length);
            this.completion = completion;
        }

        int token(int k) {
            if (tokens != null) {
                return tokens[k];
            }
            int head = bos >= 0 ? 1 : 0;
            return k < head ? bos : k == length - 1 ? eos : bytes[k - head] & 0xff;
        }

        /** Tokens {@code [from, from + n)} into {@code dst} from {@code at}. */
        void copy(int from, int[] dst, int at, int n) {
            if (tokens != null) {
                System.arraycopy(tokens, from, dst, at, n);
                return;
            }
            int head = bos >= 0 ? 1 : 0;
            int end = from + n;
            if (from < head) {
                dst[at++] = bos;
                from++;
            }
            int stop = Math.min(end, length - 1); // body positions [from, stop): bytes [from - head, stop - head)
            int shift = at - from;
            for (int k = from; k < stop; k++) {
                dst[k + shift] = bytes[k - head] & 0xff;
            }
            if (end == length) {
                dst[Math.max(from, stop) + shift] = eos;
            }
        }
    }

    /** The spans of prompt/completion records in a batch being cut: flat position, first token index, length, prompt end. */
    private static final class Spans {
        private int[] v = new int[16];
        private int count;

        void add(int at, int firstToken, int length, int promptEnd) {
            if (4 * count == v.length) {
                v = java.util.Arrays.copyOf(v, v.length * 2);
            }
            v[4 * count] = at;
            v[4 * count + 1] = firstToken;
            v[4 * count + 2] = length;
            v[4 * count + 3] = promptEnd;
            count++;
        }

        /**
         * {@code (B, T)}: 1 on a target that is a token of a text record or a completion token (or
         * EOS) of a prompt/completion record; 0 on prompt tokens and padding.
         */
        float[][] completionMask(int rows, int rowLen, int n) {
            boolean[] isCompletion = new boolean[rows * rowLen]; // (B * (T + 1)), flat
            int from = 0;
            for (int s = 0; s < count; s++) {
                int at = v[4 * s];
                java.util.Arrays.fill(isCompletion, from, at, true); // text records' tokens before this span
                for (int q = 0; q < v[4 * s + 2]; q++) {
                    isCompletion[at + q] = v[4 * s + 1] + q >= v[4 * s + 3];
                }
                from = at + v[4 * s + 2];
            }
            java.util.Arrays.fill(isCompletion, from, n, true);
            float[][] mask = new float[rows][rowLen - 1]; // (B, T)
            for (int i = 0; i < rows; i++) {
                for (int j = 0; j < rowLen - 1; j++) {
                    mask[i][j] = isCompletion[i * rowLen + j + 1] ? 1f : 0f;
                }
            }
            return mask;
        }
    }

    private final class DomainBuffer {
        final String domain;
        final ArrayDeque<Piece> pending = new ArrayDeque<>();
        long tokens;
        long sequence;

        DomainBuffer(String domain) {
            this.domain = domain;
        }

        /**
         * The next batch: at most {@code limit} tokens from the front, padded when {@code pad} (else B
         * full rows). Each record's span of the batch is copied at once; the work is split in small
         * methods (a short benchmark spends much of its time compiling one large one).
         */
        PackedBatch cut(long limit, boolean pad) {
            if (naive) {
                return cutNaive(limit, pad);
            }
            int rowLen = seqLen + 1;
            long take = Math.min(tokens, limit);
            int rows = pad ? (int) Math.min(batchSize, (take + rowLen - 1) / rowLen) : batchSize;
            int n = (int) Math.min(take, (long) rows * rowLen); // real tokens, at flat positions [0, n)
            int[][] ids = new int[rows][rowLen]; // (B, T + 1)
            Map<TopicPartition, Long> first = new TreeMap<>(Packer::compare);
            List<String> completed = new ArrayList<>();
            Spans spans = fill(ids, n, first, completed);
            if (n < rows * rowLen) {
                padFrom(ids, n);
            }
            float[][] targetMask = pad ? targetMask(rows, n) : null;
            float[][] completionMask = spans == null ? null : spans.completionMask(rows, rowLen, n);
            Map<TopicPartition, ResumePoint> resume = resume();
            Map<TopicPartition, OffsetRange> ranges = new HashMap<>();
            for (Map.Entry<TopicPartition, Long> f : first.entrySet()) {
                long from = f.getValue();
                ranges.put(f.getKey(), new OffsetRange(from, Math.max(from, resume.get(f.getKey()).offset())));
            }
            return new PackedBatch(domain, new TrainBatch(ids, targetMask, completionMask), ranges, resume, completed, sequence++);
        }

        /**
         * Moves the first {@code n} pending tokens into {@code ids} (row-major), noting each
         * partition's first offset and the records completed; returns the spans of prompt/completion
         * records ({@code null}: none).
         */
        private Spans fill(int[][] ids, int n, Map<TopicPartition, Long> first, List<String> completed) {
            int rowLen = seqLen + 1;
            Spans spans = null;
            int pos = 0;
            while (pos < n) {
                Piece p = pending.peekFirst();
                int k = Math.min(p.length - p.start, n - pos);
                first.putIfAbsent(p.tp, p.offset);
                if (p.completion) {
                    if (spans == null) {
                        spans = new Spans();
                    }
                    spans.add(pos, p.start, k, p.promptEnd);
                }
                for (int done = 0; done < k; ) { // a span may cross rows
                    int row = (pos + done) / rowLen;
                    int col = (pos + done) % rowLen;
                    int len = Math.min(k - done, rowLen - col);
                    p.copy(p.start + done, ids[row], col, len);
                    done += len;
                }
                p.start += k;
                tokens -= k;
                pos += k;
                if (p.start == p.length) {
                    completed.add(p.id);
                    pending.pollFirst();
                }
            }
            return spans;
        }

        /** The pad id from flat position {@code n} to the end. */
        private void padFrom(int[][] ids, int n) {
            int rowLen = seqLen + 1;
            int padId = tokenizer.pad() >= 0 ? tokenizer.pad() : 0;
            for (int i = n / rowLen; i < ids.length; i++) {
                java.util.Arrays.fill(ids[i], Math.max(0, n - i * rowLen), rowLen, padId);
            }
        }

        /** {@code (B, T)}: 1 where the target (flat position {@code i (T + 1) + j + 1}) is one of the {@code n} real tokens. */
        private float[][] targetMask(int rows, int n) {
            int rowLen = seqLen + 1;
            float[][] mask = new float[rows][seqLen]; // (B, T)
            for (int i = 0; i < rows; i++) {
                java.util.Arrays.fill(mask[i], 0, Math.max(0, Math.min(seqLen, n - i * rowLen - 1)), 1f);
            }
            return mask;
        }

        /**
         * Where the domain resumes in each partition once this batch is absorbed: partitions not
         * read again since the checkpoint keep its points; a partition read again from below the
         * point (the group's committed offset) never moves the point back; the first pending piece
         * of a partition is where the domain resumes there.
         */
        private Map<TopicPartition, ResumePoint> resume() {
            Map<TopicPartition, ResumePoint> resume = new HashMap<>(resumeFrom.getOrDefault(domain, Map.of()));
            for (Map.Entry<TopicPartition, Long> e : seen.entrySet()) {
                resume.merge(e.getKey(), ResumePoint.at(e.getValue()), Packer::later);
            }
            Set<TopicPartition> done = new HashSet<>();
            for (Piece p : pending) {
                if (done.add(p.tp)) {
                    resume.put(p.tp, new ResumePoint(p.offset, p.start));
                }
            }
            return resume;
        }

        /** {@link #cut}, token by token: the reference. */
        PackedBatch cutNaive(long limit, boolean pad) {
            int rowLen = seqLen + 1;
            long take = Math.min(tokens, limit);
            int rows = pad ? (int) Math.min(batchSize, (take + rowLen - 1) / rowLen) : batchSize;
            long taken = 0;
            int[][] ids = new int[rows][rowLen]; // (B, T + 1)
            boolean[][] isCompletionToken = new boolean[rows][rowLen]; // (B, T + 1)
            boolean[][] real = new boolean[rows][rowLen]; // (B, T + 1)
            boolean anyCompletion = false;
            Map<TopicPartition, Long> first = new TreeMap<>(Packer::compare);
            List<String> completed = new ArrayList<>();
            for (int i = 0; i < rows; i++) {
                for (int j = 0; j < rowLen; j++) {
                    Piece p = taken < take ? pending.peekFirst() : null;
                    if (p == null) {
                        ids[i][j] = tokenizer.pad() >= 0 ? tokenizer.pad() : 0;
                        continue;
                    }
                    int k = p.start;
                    ids[i][j] = p.token(k);
                    real[i][j] = true;
                    isCompletionToken[i][j] = !p.completion || k >= p.promptEnd;
                    anyCompletion |= p.completion;
                    first.putIfAbsent(p.tp, p.offset);
                    p.start++;
                    tokens--;
                    taken++;
                    if (p.start == p.length) {
                        completed.add(p.id);
                        pending.pollFirst();
                    }
                }
            }
            float[][] targetMask = null;
            if (pad) {
                targetMask = new float[rows][seqLen]; // (B, T)
                for (int i = 0; i < rows; i++) {
                    for (int j = 0; j < seqLen; j++) {
                        targetMask[i][j] = real[i][j + 1] ? 1f : 0f;
                    }
                }
            }
            float[][] completionMask = null;
            if (anyCompletion) {
                completionMask = new float[rows][seqLen]; // (B, T)
                for (int i = 0; i < rows; i++) {
                    for (int j = 0; j < seqLen; j++) {
                        completionMask[i][j] = isCompletionToken[i][j + 1] ? 1f : 0f;
                    }
                }
            }
            // partitions not read again since the checkpoint keep its points; a partition read again
            // from below the point (the group's committed offset) never moves the point back
            Map<TopicPartition, ResumePoint> resume = new HashMap<>(resumeFrom.getOrDefault(domain, Map.of()));
            seen.forEach((tp, next) -> resume.merge(tp, ResumePoint.at(next), Packer::later));
            Map<TopicPartition, Boolean> done = new HashMap<>();
            for (Piece p : pending) { // the first pending piece of each partition is where the domain resumes
                if (done.putIfAbsent(p.tp, Boolean.TRUE) == null) {
                    resume.put(p.tp, new ResumePoint(p.offset, p.start));
                }
            }
            Map<TopicPartition, OffsetRange> ranges = new HashMap<>();
            first.forEach((tp, f) -> ranges.put(tp, new OffsetRange(f, Math.max(f, resume.get(tp).offset()))));
            return new PackedBatch(domain, new TrainBatch(ids, targetMask, completionMask), ranges, resume, completed, sequence++);
        }
    }

    private static ResumePoint later(ResumePoint a, ResumePoint b) {
        return ResumePoint.later(a, b);
    }

    private static int compare(TopicPartition a, TopicPartition b) {
        int c = a.topic().compareTo(b.topic());
        return c != 0 ? c : Integer.compare(a.partition(), b.partition());
    }

    /** Records buffered for {@code domain} (wholly or partly not yet in a batch). */
    public int bufferedRecords(String domain) {
        DomainBuffer b = domains.get(domain);
        return b == null ? 0 : b.pending.size();
    }
}
