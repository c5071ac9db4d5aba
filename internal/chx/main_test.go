package chx
import ("testing";"context";"os";"fmt";"github.com/apimeter/apimeter/store/clickhouse/chtest")
func TestStart(t *testing.T){ s,err:=chtest.Start(context.Background(),"/tmp/chx/srv"); if err!=nil{t.Fatal(err)}; fmt.Println(s.Addr); os.WriteFile("/tmp/chx/addr",[]byte(s.Addr),0644); select{} }
