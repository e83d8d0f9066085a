package dev.morastream.streams.records;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.config.TopicConfig;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes rejected records to a dead-letter topic: the ORIGINAL key, value, headers and timestamp,
 * plus the error headers ({@link #ERROR_HEADERS}): {@code x-reason} (a {@link Rejected.Reason#code()}),
 * {@code x-reason-detail}, {@code x-source-topic}, {@code x-source-partition},
 * {@code x-source-offset}, {@code x-source-timestamp}, {@code x-consumer-group},
 * {@code x-dead-lettered-at} (epoch ms), and the headers Kafka Connect's dead-letter queue writes
 * ({@code __connect.errors.topic}, {@code .partition}, {@code .offset},
 * {@code .exception.class.name}, {@code .exception.message}), so Connect tooling reads them too.
 *
 * <p><b>Always written.</b> A dead letter must fit the topic's {@code max.message.bytes} (read from
 * the broker at {@link #create}; the producer's {@code max.request.size} is set to it). One that
 * would not (a near-limit record plus headers, a gzip record whose compressed size passed the
 * broker) is written with its value cut to fit, marked {@code x-truncated} and carrying
 * {@code x-original-size} and {@code x-original-sha256} (hex SHA-256 of the original value); if the
 * key and headers alone are too large, the original headers, then the key, are dropped too (named in
 * {@code x-truncated}). A truncated letter cannot be replayed.
 *
 * <p><b>Once per source record.</b> {@link #send} completes when the broker has acknowledged the
 * letter (acks=all, idempotent producer), so a source offset is never committed before its dead
 * letter is durable. A record dead-lettered already (by this writer, or found in the topic's tail
 * at {@link #create}: the last {@value #TAIL} letters of each partition, for the same consumer
 * group) is not written again: a restart that reads it again does not duplicate its letter.
 */
public final class DeadLetters implements AutoCloseable {
    public static final String REASON = "x-reason";
    public static final String REASON_DETAIL = "x-reason-detail";
    public static final String SOURCE_TOPIC = "x-source-topic";
    public static final String SOURCE_PARTITION = "x-source-partition";
    public static final String SOURCE_OFFSET = "x-source-offset";
    public static final String SOURCE_TIMESTAMP = "x-source-timestamp";
    public static final String CONSUMER_GROUP = "x-consumer-group";
    public static final String DEAD_LETTERED_AT = "x-dead-lettered-at";
    /** What was cut to fit: {@code value}, {@code value,headers}, {@code value,headers,key}. */
    public static final String TRUNCATED = "x-truncated";
    public static final String ORIGINAL_SIZE = "x-original-size";
    public static final String ORIGINAL_SHA256 = "x-original-sha256";
    /** Kafka Connect's DLQ context headers ({@code org.apache.kafka.connect.runtime.errors.DeadLetterQueueReporter}). */
    public static final String CONNECT_PREFIX = "__connect.errors.";
    public static final String CONNECT_TOPIC = CONNECT_PREFIX + "topic";
    public static final String CONNECT_PARTITION = CONNECT_PREFIX + "partition";
    public static final String CONNECT_OFFSET = CONNECT_PREFIX + "offset";
    public static final String CONNECT_EXCEPTION_CLASS = CONNECT_PREFIX + "exception.class.name";
    public static final String CONNECT_EXCEPTION_MESSAGE = CONNECT_PREFIX + "exception.message";
    /** The headers this writer adds (a replay removes them, and every {@link #CONNECT_PREFIX} header). */
    public static final Set<String> ERROR_HEADERS = Set.of(REASON, REASON_DETAIL, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET,
            SOURCE_TIMESTAMP, CONSUMER_GROUP, DEAD_LETTERED_AT, TRUNCATED, ORIGINAL_SIZE, ORIGINAL_SHA256);

    /** Letters read back per dead-letter partition at {@link #create}, to skip records dead-lettered before a restart. */
    static final int TAIL = 100_000;
    /** The broker's default {@code message.max.bytes}, used when the limit cannot be read. */
    static final int DEFAULT_MAX_BYTES = 1_048_588;
    /** Bytes kept free below the limit for the record batch's and the record's own framing. */
    private static final int FRAMING = 512;
    private static final int MAX_MESSAGE_CHARS = 1_000;
    private static final int MAX_REMEMBERED = 1_000_000;
    private static final Logger log = LoggerFactory.getLogger(DeadLetters.class);

    /** A source record. */
    private record Key(String topic, int partition, long offset) {}

    private final Producer<byte[], byte[]> producer;
    private final String topic;
    private final String groupId;
    private final int maxBytes;
    private final AtomicLong count = new AtomicLong();
    private final AtomicLong duplicates = new AtomicLong();
    private final AtomicLong truncated = new AtomicLong();
    private final Set<Key> written;
    private final Map<Key, CompletableFuture<Void>> inFlight = new ConcurrentHashMap<>();
    private final RepeatedFailures failures = new RepeatedFailures();

    /**
     * @param groupId the consumer group whose letters these are ({@code x-consumer-group}; {@code null}: not named)
     * @param maxBytes the largest dead letter the topic takes (its {@code max.message.bytes})
     * @param alreadyWritten letters already in the topic, as {@code (topic, partition, offset)} of their source
     */
    DeadLetters(Producer<byte[], byte[]> producer, String topic, String groupId, int maxBytes,
                Collection<ConsumerRecord<byte[], byte[]>> alreadyWritten) {
        this.producer = Objects.requireNonNull(producer);
        this.topic = Objects.requireNonNull(topic);
        this.groupId = groupId;
        if (maxBytes <= 4 * FRAMING) {
            throw new IllegalArgumentException("max.message.bytes " + maxBytes + " of " + topic + " is too small for dead letters");
        }
        this.maxBytes = maxBytes;
        this.written = java.util.Collections.newSetFromMap(new java.util.LinkedHashMap<>() {
            @Override
            protected boolean removeEldestEntry(Map.Entry<Key, Boolean> eldest) {
                return size() > MAX_REMEMBERED;
            }
        });
        for (ConsumerRecord<byte[], byte[]> l : alreadyWritten) {
            Key k = sourceOf(l);
            if (k != null && (groupId == null || Objects.equals(groupId, header(l, CONSUMER_GROUP)))) {
                written.add(k);
            }
        }
    }

    public DeadLetters(Producer<byte[], byte[]> producer, String topic) {
        this(producer, topic, null, DEFAULT_MAX_BYTES, List.of());
    }

    /** A dead-letter writer with its own producer; {@code clientProps} pass through (SASL, TLS…). */
    public static DeadLetters create(Map<String, Object> clientProps, String topic) {
        return create(clientProps, topic, null);
    }

    /**
     * A dead-letter writer for consumer group {@code groupId}, with its own producer sized to the
     * topic's {@code max.message.bytes} (else the broker's {@code message.max.bytes}), that knows the
     * letters of that group already in the topic's tail. {@code clientProps} pass through (SASL, TLS…).
     */
    public static DeadLetters create(Map<String, Object> clientProps, String topic, String groupId) {
        int limit = DEFAULT_MAX_BYTES;
        List<ConsumerRecord<byte[], byte[]>> tail = List.of();
        try (Admin admin = Admin.create(new HashMap<>(clientProps))) {
            limit = maxMessageBytes(admin, topic);
            tail = readTail(admin, clientProps, topic);
        } catch (Exception e) {
            log.warn("cannot read the limits or the tail of dead-letter topic {} ({}); assuming {} bytes and no earlier letters",
                    topic, e.toString(), limit);
        }
        Map<String, Object> props = new HashMap<>(clientProps);
        props.putIfAbsent(ProducerConfig.ACKS_CONFIG, "all");
        props.putIfAbsent(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        props.putIfAbsent(ProducerConfig.LINGER_MS_CONFIG, 5);
        props.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, limit);
        props.put(ProducerConfig.BATCH_SIZE_CONFIG, Math.min(16_384, limit));
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "none"); // the limit is checked on the compressed batch: keep sizes exact
        log.info("dead letters to {} (at most {} bytes each{}; {} earlier letters in its tail)", topic, limit,
                groupId == null ? "" : ", group " + groupId, tail.size());
        return new DeadLetters(new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer()), topic, groupId,
                limit, tail);
    }

    /** The topic's {@code max.message.bytes}, or the broker's {@code message.max.bytes} when the topic does not exist yet. */
    static int maxMessageBytes(Admin admin, String topic) throws Exception {
        boolean exists = admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic);
        ConfigResource res;
        String key;
        if (exists) {
            res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            key = TopicConfig.MAX_MESSAGE_BYTES_CONFIG;
        } else {
            String node = admin.describeCluster().controller().get(30, TimeUnit.SECONDS).idString();
            res = new ConfigResource(ConfigResource.Type.BROKER, node);
            key = "message.max.bytes";
        }
        Config c = admin.describeConfigs(List.of(res)).all().get(30, TimeUnit.SECONDS).get(res);
        ConfigEntry e = c == null ? null : c.get(key);
        return e == null || e.value() == null ? DEFAULT_MAX_BYTES : Integer.parseInt(e.value());
    }

    private static List<ConsumerRecord<byte[], byte[]>> readTail(Admin admin, Map<String, Object> clientProps, String topic)
            throws Exception {
        if (!admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic)) {
            return List.of();
        }
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
        List<TopicPartition> tps = d.partitions().stream().map(p -> new TopicPartition(topic, p.partition())).toList();
        Map<String, Object> props = new HashMap<>(clientProps);
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        props.remove(ConsumerConfig.GROUP_ID_CONFIG);
        List<ConsumerRecord<byte[], byte[]>> out = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            c.assign(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps, Duration.ofSeconds(30));
            Map<TopicPartition, Long> begin = c.beginningOffsets(tps, Duration.ofSeconds(30));
            for (TopicPartition tp : tps) {
                c.seek(tp, Math.max(begin.get(tp), end.get(tp) - TAIL));
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (tps.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
                if (System.nanoTime() > deadline) {
                    throw new java.util.concurrent.TimeoutException("reading the tail of " + topic);
                }
                c.poll(Duration.ofMillis(200)).forEach(out::add);
            }
        }
        return out;
    }

    public String topic() {
        return topic;
    }

    /** The largest dead letter written whole or cut, in bytes (the topic's limit). */
    public int maxBytes() {
        return maxBytes;
    }

    /** Dead letters written (acknowledged) so far. */
    public long count() {
        return count.get();
    }

    /** Records not written again because their letter was already written (after a restart). */
    public long duplicatesSkipped() {
        return duplicates.get();
    }

    /** Dead letters written cut to fit. */
    public long truncatedCount() {
        return truncated.get();
    }

    /** The poison-loop breaker of the streams that write here. */
    public RepeatedFailures failures() {
        return failures;
    }

    /** Whether the record at this source position has a dead letter already. */
    public boolean contains(String sourceTopic, int partition, long offset) {
        synchronized (written) {
            return written.contains(new Key(sourceTopic, partition, offset));
        }
    }

    /** Writes the dead letter of {@code rejected} (unless written already); completes once it is durable. */
    public CompletionStage<Rejected> send(Rejected rejected) {
        var src = rejected.source();
        Key key = new Key(src.topic(), src.partition(), src.offset());
        synchronized (written) {
            if (written.contains(key)) {
                duplicates.incrementAndGet();
                return CompletableFuture.completedFuture(rejected);
            }
        }
        CompletableFuture<Void> mine = new CompletableFuture<>();
        CompletableFuture<Void> earlier = inFlight.putIfAbsent(key, mine);
        if (earlier != null) { // the same record from a stream that failed meanwhile: wait for that letter
            duplicates.incrementAndGet();
            return earlier.thenApply(x -> rejected);
        }
        ProducerRecord<byte[], byte[]> letter = letter(rejected, maxBytes);
        producer.send(letter, (meta, err) -> {
            if (err instanceof RecordTooLargeException) {
                // the estimate of the framing was short: the error headers alone (they are small) always fit
                log.warn("dead letter of {} too large even cut ({}); writing its error headers only", key, err.getMessage());
                producer.send(headersOnly(letter), (m2, e2) -> done(key, mine, e2, true));
            } else {
                done(key, mine, err, headerPresent(letter.headers(), TRUNCATED));
            }
        });
        return mine.thenApply(x -> rejected);
    }

    private void done(Key key, CompletableFuture<Void> f, Exception err, boolean wasTruncated) {
        inFlight.remove(key, f);
        if (err != null) {
            f.completeExceptionally(err);
            return;
        }
        synchronized (written) {
            written.add(key);
        }
        count.incrementAndGet();
        if (wasTruncated) {
            truncated.incrementAndGet();
        }
        f.complete(null);
    }

    /** The dead letter of {@code rejected}, cut to fit {@code maxBytes}. */
    ProducerRecord<byte[], byte[]> letter(Rejected rejected, int maxBytes) {
        ConsumerRecord<byte[], byte[]> src = rejected.source();
        Headers errors = new RecordHeaders();
        add(errors, REASON, rejected.reason().code());
        if (rejected.detail() != null) {
            add(errors, REASON_DETAIL, abbreviate(rejected.detail()));
        }
        add(errors, SOURCE_TOPIC, src.topic());
        add(errors, SOURCE_PARTITION, Integer.toString(src.partition()));
        add(errors, SOURCE_OFFSET, Long.toString(src.offset()));
        if (src.timestamp() >= 0) {
            add(errors, SOURCE_TIMESTAMP, Long.toString(src.timestamp()));
        }
        if (groupId != null) {
            add(errors, CONSUMER_GROUP, groupId);
        }
        add(errors, DEAD_LETTERED_AT, Long.toString(System.currentTimeMillis()));
        Throwable error = rejected.error() != null ? rejected.error() : new InvalidRecordException(rejected.reason(), rejected.detail());
        add(errors, CONNECT_TOPIC, src.topic());
        add(errors, CONNECT_PARTITION, Integer.toString(src.partition()));
        add(errors, CONNECT_OFFSET, Long.toString(src.offset()));
        add(errors, CONNECT_EXCEPTION_CLASS, error.getClass().getName());
        add(errors, CONNECT_EXCEPTION_MESSAGE, abbreviate(String.valueOf(error.getMessage())));

        byte[] key = src.key();
        byte[] value = src.value();
        List<Header> original = new ArrayList<>();
        if (src.headers() != null) {
            src.headers().forEach(original::add);
        }
        int budget = maxBytes - FRAMING - sizeOf(errors) - 200; // 200: the truncation headers, if needed
        List<String> cut = new ArrayList<>();
        if (length(key) + sizeOf(original) + length(value) > budget) {
            cut.add("value");
            if (length(key) + sizeOf(original) > budget / 2) {
                cut.add("headers");
                original = List.of();
                if (length(key) > budget / 2) {
                    cut.add("key");
                    key = null;
                }
            }
            int keep = Math.max(0, budget - length(key) - sizeOf(original));
            add(errors, TRUNCATED, String.join(",", cut));
            add(errors, ORIGINAL_SIZE, Integer.toString(length(src.value())));
            add(errors, ORIGINAL_SHA256, sha256(src.value()));
            value = value == null || value.length <= keep ? value : java.util.Arrays.copyOf(value, keep);
        }
        Headers headers = new RecordHeaders();
        original.forEach(headers::add);
        errors.forEach(headers::add);
        Long timestamp = src.timestamp() >= 0 ? src.timestamp() : null;
        return new ProducerRecord<>(topic, null, timestamp, key, value, headers);
    }

    /** {@code letter} with only its error headers (no key, value nor original headers): always small. */
    private static ProducerRecord<byte[], byte[]> headersOnly(ProducerRecord<byte[], byte[]> letter) {
        Headers headers = new RecordHeaders();
        for (Header h : letter.headers()) {
            if (isErrorHeader(h.key()) && !h.key().equals(TRUNCATED) && !h.key().equals(ORIGINAL_SIZE)
                    && !h.key().equals(ORIGINAL_SHA256)) {
                headers.add(h);
            }
        }
        Header size = letter.headers().lastHeader(ORIGINAL_SIZE); // present when the value was cut already
        Header sha = letter.headers().lastHeader(ORIGINAL_SHA256);
        add(headers, TRUNCATED, "value,headers,key");
        headers.add(ORIGINAL_SIZE, size != null ? size.value()
                : Integer.toString(length(letter.value())).getBytes(StandardCharsets.UTF_8));
        headers.add(ORIGINAL_SHA256, sha != null ? sha.value() : sha256(letter.value()).getBytes(StandardCharsets.UTF_8));
        return new ProducerRecord<>(letter.topic(), null, letter.timestamp(), null, null, headers);
    }

    /** The source record of a dead letter, from its headers; {@code null} when it has none. */
    private static Key sourceOf(ConsumerRecord<byte[], byte[]> letter) {
        String t = header(letter, SOURCE_TOPIC);
        String p = header(letter, SOURCE_PARTITION);
        String o = header(letter, SOURCE_OFFSET);
        if (t == null || p == null || o == null) {
            return null;
        }
        try {
            return new Key(t, Integer.parseInt(p), Long.parseLong(o));
        } catch (NumberFormatException e) {
            return null;
        }
    }

    /** The last value of header {@code name} as UTF-8, or {@code null}. */
    public static String header(ConsumerRecord<byte[], byte[]> r, String name) {
        Header h = r.headers().lastHeader(name);
        return h == null || h.value() == null ? null : new String(h.value(), StandardCharsets.UTF_8);
    }

    /** Whether {@code name} is an error header (a replay drops it). */
    public static boolean isErrorHeader(String name) {
        return ERROR_HEADERS.contains(name) || name.startsWith(CONNECT_PREFIX);
    }

    private static boolean headerPresent(Headers h, String name) {
        return h.lastHeader(name) != null;
    }

    private static void add(Headers h, String name, String value) {
        h.add(name, value.getBytes(StandardCharsets.UTF_8));
    }

    private static int sizeOf(Iterable<Header> headers) {
        int n = 0;
        for (Header h : headers) {
            n += h.key().getBytes(StandardCharsets.UTF_8).length + length(h.value()) + 10; // + varint lengths
        }
        return n;
    }

    private static int length(byte[] b) {
        return b == null ? 0 : b.length;
    }

    static String sha256(byte[] b) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b == null ? new byte[0] : b));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String abbreviate(String s) {
        return s.length() <= MAX_MESSAGE_CHARS ? s : s.substring(0, MAX_MESSAGE_CHARS) + "…";
    }

    @Override
    public void close() {
        producer.close(java.time.Duration.ofSeconds(5));
    }
}
