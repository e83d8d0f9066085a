package dev.morastream.streams;

import dev.morastream.streams.kafka.EmbeddedKafka;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/** A plain (PLAINTEXT) embedded broker, an actor test kit and a byte producer for the tests of one class. */
abstract class PlainBrokerTestBase extends StreamTestBase {
    protected static EmbeddedKafka kafka;
    protected static KafkaProducer<byte[], byte[]> producer;

    @BeforeAll
    static void startBroker() throws Exception {
        Files.createDirectories(Path.of("target"));
        kafka = EmbeddedKafka.start(Files.createTempDirectory(Path.of("target"), "kafka-test-"));
        kit = ActorTestKit.create();
        producer = new KafkaProducer<>(Map.of(
                ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrapServers(),
                ProducerConfig.LINGER_MS_CONFIG, 5,
                ProducerConfig.ACKS_CONFIG, "all"), new ByteArraySerializer(), new ByteArraySerializer());
    }

    @AfterAll
    static void stopBroker() {
        producer.close();
        kit.shutdownTestKit();
        kafka.close();
    }

    /** The offsets {@code group} has committed, by partition (in partition order). */
    protected static Map<TopicPartition, Long> committed(String group) throws Exception {
        Map<TopicPartition, Long> out = new TreeMap<>((x, y) -> x.toString().compareTo(y.toString()));
        kafka.admin().listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get()
                .forEach((tp, o) -> out.put(tp, o.offset()));
        return out;
    }

    /** The log end offsets of partitions 0 to {@code partitions - 1} of {@code topic}. */
    protected static Map<TopicPartition, Long> endOffsets(String topic, int partitions) throws Exception {
        Map<TopicPartition, OffsetSpec> req = new HashMap<>();
        for (int p = 0; p < partitions; p++) {
            req.put(new TopicPartition(topic, p), OffsetSpec.latest());
        }
        Map<TopicPartition, Long> out = new TreeMap<>((x, y) -> x.toString().compareTo(y.toString()));
        kafka.admin().listOffsets(req).all().get().forEach((tp, r) -> out.put(tp, r.offset()));
        return out;
    }
}
