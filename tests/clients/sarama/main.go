// Command sarama-client drives Debian's sarama (github.com/Shopify/sarama
// 1.22, the library Burrow and many Go services are built on) against a
// broker, one action per run, and prints what it saw as one JSON object on
// stdout. tests/integration/test_sarama.py builds it (GOPATH mode, against
// /usr/share/gocode) and checks the JSON.
//
// The -version flag picks sarama's protocol version: "default" keeps
// sarama.NewConfig()'s (0.8.2: Produce v0 with message format v0, Fetch v0,
// ListOffsets v0, OffsetCommit v1, OffsetFetch v1); "0.10.2" is
// sarama.V0_10_2_0 (Produce v2 with format v1, Fetch v3, ListOffsets v1,
// and the consumer group API: JoinGroup v1, SyncGroup/Heartbeat v0), with an
// offset retention set so that commits go out as OffsetCommit v2 (sarama
// sends v1 when none is set, at any version).
//
// Actions:
//
//	produce -topic T -codec none|gzip|snappy|lz4 -count N
//	    a sync producer writes N records to partition 0 (keys k<i> on odd i,
//	    none on even ones; values <topic>-<i>; timestamps 1000+i from
//	    0.10); prints {"offsets": [...]}
//	consume -topic T -count N
//	    a partition consumer from the oldest offset; prints {"messages":
//	    [{"offset", "key", "value", "timestamp"}]} (timestamp -1 when none)
//	offsets -topic T
//	    ListOffsets through Client.GetOffset; prints {"oldest", "newest"}
//	commit -group G -topic T -offset O
//	    an OffsetManager marks O on partition 0 and closes (which commits),
//	    then a new one fetches it; prints {"committed": O'}
//	group -group G -topic T -count N
//	    a consumer group member (0.10.2 only) consumes N records from
//	    partition 0 and marks them; prints {"messages": [...], "committed"}
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

type message struct {
	Offset    int64   `json:"offset"`
	Key       *string `json:"key"`
	Value     *string `json:"value"`
	Timestamp int64   `json:"timestamp"`
}

type options struct {
	brokers []string
	topic   string
	group   string
	codec   string
	count   int
	offset  int64
}

var codecs = map[string]sarama.CompressionCodec{
	"none":   sarama.CompressionNone,
	"gzip":   sarama.CompressionGZIP,
	"snappy": sarama.CompressionSnappy,
	"lz4":    sarama.CompressionLZ4,
}

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: sarama-client ACTION [flags]"))
	}
	action := os.Args[1]
	flags := flag.NewFlagSet(action, flag.ExitOnError)
	bootstrap := flags.String("bootstrap", "127.0.0.1:9092", "broker address")
	version := flags.String("version", "default", "default or 0.10.2")
	var opts options
	flags.StringVar(&opts.topic, "topic", "", "topic")
	flags.StringVar(&opts.group, "group", "", "consumer group")
	flags.StringVar(&opts.codec, "codec", "none", "none, gzip, snappy or lz4")
	flags.IntVar(&opts.count, "count", 1, "records")
	flags.Int64Var(&opts.offset, "offset", 0, "offset to commit")
	if err := flags.Parse(os.Args[2:]); err != nil {
		fail(err)
	}
	opts.brokers = []string{*bootstrap}

	config := sarama.NewConfig()
	switch *version {
	case "default":
	case "0.10.2":
		config.Version = sarama.V0_10_2_0
		config.Consumer.Offsets.Retention = 24 * time.Hour
	default:
		fail(fmt.Errorf("unknown version %q", *version))
	}
	config.ClientID = "moldau-sarama-test"
	config.Metadata.Retry.Backoff = 50 * time.Millisecond
	config.Producer.Return.Successes = true
	config.Producer.RequiredAcks = sarama.WaitForAll
	config.Consumer.Offsets.Initial = sarama.OffsetOldest
	config.Consumer.Offsets.CommitInterval = 100 * time.Millisecond
	config.Consumer.Return.Errors = true

	var result interface{}
	var err error
	switch action {
	case "produce":
		result, err = produce(config, opts)
	case "consume":
		result, err = consume(config, opts)
	case "offsets":
		result, err = listOffsets(config, opts)
	case "commit":
		result, err = commit(config, opts)
	case "group":
		result, err = group(config, opts)
	default:
		err = fmt.Errorf("unknown action %q", action)
	}
	if err != nil {
		fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(result); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sarama-client:", err)
	os.Exit(1)
}

func produce(config *sarama.Config, opts options) (interface{}, error) {
	codec, ok := codecs[opts.codec]
	if !ok {
		return nil, fmt.Errorf("unknown codec %q", opts.codec)
	}
	config.Producer.Compression = codec
	config.Producer.Partitioner = sarama.NewManualPartitioner
	// One request for all the records, so a compressed wrapper holds several.
	config.Producer.Flush.Messages = opts.count
	config.Producer.Flush.Frequency = 50 * time.Millisecond
	producer, err := sarama.NewSyncProducer(opts.brokers, config)
	if err != nil {
		return nil, err
	}
	defer producer.Close()
	batch := make([]*sarama.ProducerMessage, opts.count)
	for i := range batch {
		m := &sarama.ProducerMessage{
			Topic:     opts.topic,
			Partition: 0,
			Value:     sarama.StringEncoder(fmt.Sprintf("%s-%d", opts.topic, i)),
			Timestamp: time.Unix(0, int64(1000+i)*int64(time.Millisecond)),
		}
		if i%2 == 1 {
			m.Key = sarama.StringEncoder(fmt.Sprintf("k%d", i))
		}
		batch[i] = m
	}
	if err := producer.SendMessages(batch); err != nil {
		return nil, err
	}
	offsets := make([]int64, len(batch))
	for i, m := range batch {
		offsets[i] = m.Offset
	}
	return map[string]interface{}{"offsets": offsets}, nil
}

func seen(m *sarama.ConsumerMessage) message {
	out := message{Offset: m.Offset, Timestamp: -1}
	if m.Key != nil {
		key := string(m.Key)
		out.Key = &key
	}
	if m.Value != nil {
		value := string(m.Value)
		out.Value = &value
	}
	if !m.Timestamp.IsZero() {
		out.Timestamp = m.Timestamp.UnixNano() / int64(time.Millisecond)
	}
	return out
}

func consume(config *sarama.Config, opts options) (interface{}, error) {
	consumer, err := sarama.NewConsumer(opts.brokers, config)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	partition, err := consumer.ConsumePartition(opts.topic, 0, sarama.OffsetOldest)
	if err != nil {
		return nil, err
	}
	defer partition.Close()
	messages := []message{}
	deadline := time.After(15 * time.Second)
	for len(messages) < opts.count {
		select {
		case m := <-partition.Messages():
			messages = append(messages, seen(m))
		case e := <-partition.Errors():
			return nil, e
		case <-deadline:
			return nil, fmt.Errorf("%d of %d records after 15 s", len(messages), opts.count)
		}
	}
	return map[string]interface{}{"messages": messages}, nil
}

func listOffsets(config *sarama.Config, opts options) (interface{}, error) {
	client, err := sarama.NewClient(opts.brokers, config)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	oldest, err := client.GetOffset(opts.topic, 0, sarama.OffsetOldest)
	if err != nil {
		return nil, err
	}
	newest, err := client.GetOffset(opts.topic, 0, sarama.OffsetNewest)
	if err != nil {
		return nil, err
	}
	return map[string]int64{"oldest": oldest, "newest": newest}, nil
}

// committed reads the group's offset of partition 0 with a fresh OffsetManager
// (OffsetFetch v1).
func committed(client sarama.Client, opts options) (int64, error) {
	manager, err := sarama.NewOffsetManagerFromClient(opts.group, client)
	if err != nil {
		return 0, err
	}
	defer manager.Close()
	partition, err := manager.ManagePartition(opts.topic, 0)
	if err != nil {
		return 0, err
	}
	defer partition.Close()
	offset, _ := partition.NextOffset()
	return offset, nil
}

func commit(config *sarama.Config, opts options) (interface{}, error) {
	client, err := sarama.NewClient(opts.brokers, config)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	manager, err := sarama.NewOffsetManagerFromClient(opts.group, client)
	if err != nil {
		return nil, err
	}
	partition, err := manager.ManagePartition(opts.topic, 0)
	if err != nil {
		return nil, err
	}
	partition.MarkOffset(opts.offset, "sarama")
	// Closing flushes the marked offset (OffsetCommit) and waits for it.
	if err := partition.Close(); err != nil {
		return nil, err
	}
	if err := manager.Close(); err != nil {
		return nil, err
	}
	offset, err := committed(client, opts)
	if err != nil {
		return nil, err
	}
	return map[string]int64{"committed": offset}, nil
}

type handler struct {
	want     int
	mu       sync.Mutex
	messages []message
	done     chan struct{}
	once     sync.Once
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for m := range c.Messages() {
		s.MarkMessage(m, "")
		h.mu.Lock()
		h.messages = append(h.messages, seen(m))
		if len(h.messages) >= h.want {
			h.once.Do(func() { close(h.done) })
		}
		h.mu.Unlock()
	}
	return nil
}

func group(config *sarama.Config, opts options) (interface{}, error) {
	client, err := sarama.NewClient(opts.brokers, config)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	members, err := sarama.NewConsumerGroupFromClient(opts.group, client)
	if err != nil {
		return nil, err
	}
	h := &handler{want: opts.count, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	failed := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := members.Consume(ctx, []string{opts.topic}, h); err != nil {
				failed <- err
				return
			}
		}
	}()
	select {
	case <-h.done:
	case err := <-failed:
		cancel()
		return nil, err
	case err := <-members.Errors():
		cancel()
		return nil, err
	case <-time.After(20 * time.Second):
		cancel()
		return nil, fmt.Errorf("%d of %d records after 20 s", len(h.messages), opts.count)
	}
	cancel()
	// Closing commits the marked offsets and leaves the group.
	if err := members.Close(); err != nil {
		return nil, err
	}
	offset, err := committed(client, opts)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return map[string]interface{}{"messages": h.messages, "committed": offset}, nil
}
